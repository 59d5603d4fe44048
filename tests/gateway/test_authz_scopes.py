"""The authorize step: required scopes per route and method, route restrictions, 403s."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from bastion.demo.echo import EchoServer
from bastion.gateway import (
    STEPS,
    Exchange,
    ForbiddenError,
    Gateway,
    GatewayConfigError,
    Identity,
    InsufficientScopeError,
    RouteNotAllowedError,
)
from bastion.gateway.authz import RequiredScopes, check_access, compile_scopes
from bastion.http.problem import problem_response
from bastion.settings import RouteMatch, RouteSettings
from gateway.gateway_support import Match, call


def test_the_table_has_authorize_between_authenticate_and_proxy() -> None:
    names = [step.name for step in STEPS]
    assert names.index("authenticate") + 1 == names.index("authorize")
    assert names.index("authorize") < names.index("proxy")
    assert next(s for s in STEPS if s.name == "authorize").fail == "closed"


def test_compile_list_and_mapping() -> None:
    every = compile_scopes(["a", "b"])
    assert every.for_method("GET") == every.for_method("DELETE") == frozenset({"a", "b"})
    assert compile_scopes(None).for_method("POST") == frozenset()
    assert compile_scopes([]).for_method("POST") == frozenset()
    mapping = compile_scopes({"GET": ["r"], "post": ["w"], "*": ["admin"]})
    assert mapping.for_method("GET") == frozenset({"r"})
    assert mapping.for_method("HEAD") == frozenset({"r"})  # HEAD falls back to GET
    assert mapping.for_method("POST") == frozenset({"w"})
    assert mapping.for_method("DELETE") == frozenset({"admin"})
    partial = compile_scopes({"GET": ["r"], "HEAD": []})
    assert partial.for_method("HEAD") == frozenset()
    assert partial.for_method("PUT") is None  # not covered: denied by check_access
    with pytest.raises(ValueError, match="scopes must be a list of scope names, got 'r'"):
        compile_scopes("r")


def test_check_access() -> None:
    required = compile_scopes({"GET": ["r"], "POST": ["r", "w"]})
    check_access("orders", "GET", required, frozenset({"r"}), None)
    check_access("orders", "GET", None, frozenset(), None)
    check_access("orders", "GET", required, frozenset({"r", "x"}), frozenset({"orders"}))
    with pytest.raises(RouteNotAllowedError):
        check_access("orders", "GET", required, frozenset({"r"}), frozenset({"billing"}))
    with pytest.raises(RouteNotAllowedError):  # an empty restriction allows nothing
        check_access("orders", "GET", None, frozenset(), frozenset())
    with pytest.raises(InsufficientScopeError) as caught:
        check_access("orders", "POST", required, frozenset({"r"}), None)
    assert caught.value.required == ("r", "w")
    with pytest.raises(ForbiddenError) as denied:
        check_access("orders", "PUT", required, frozenset({"r", "w"}), None)
    assert type(denied.value) is ForbiddenError
    assert denied.value.detail == "The route's scopes name no rule for PUT; the request is denied."
    assert (denied.value.code, denied.value.status) == ("forbidden", 403)


def test_insufficient_scope_renders_rfc6750_challenge() -> None:
    error = InsufficientScopeError(["orders:write", "orders:read", "orders:write"])
    status, headers, body = problem_response(error, "req-9")
    assert status == 403
    named = dict(headers)
    assert named[b"www-authenticate"] == (
        b'Bearer realm="bastion", error="insufficient_scope", scope="orders:read orders:write"'
    )
    assert named[b"content-type"] == b"application/problem+json"
    assert orjson.loads(body) == {
        "type": "urn:bastion:problem:insufficient_scope",
        "title": "Insufficient scope",
        "status": 403,
        "detail": "This request needs the scopes: orders:read orders:write.",
        "reason": "insufficient_scope",
        "scope": "orders:read orders:write",
        "request_id": "req-9",
    }


def test_route_not_allowed_renders() -> None:
    status, headers, body = problem_response(RouteNotAllowedError(), "r")
    assert status == 403
    assert b"www-authenticate" not in dict(headers)
    document = orjson.loads(body)
    assert document["reason"] == "route_not_allowed"
    assert document["detail"] == "This credential may not call this route."


# -- through the Gateway ---------------------------------------------------------------------


@dataclass(frozen=True)
class ScopedRoute:
    """A hand-built route with ``scopes`` (RouteSettings refuses uncovered methods)."""

    name: str
    match: Match
    upstream: str
    scopes: Any = None
    public: bool = False
    auth: Sequence[str] = field(default_factory=lambda: ("jwt",))
    strip_prefix: bool = False
    timeout: float = 5.0


def granting(*scopes: str) -> Any:
    async def authenticator(ex: Exchange) -> Identity | None:
        return Identity(method="jwt", subject="svc", scopes=frozenset(scopes))

    return authenticator


async def test_scopes_per_method_through_the_gateway(echo: EchoServer) -> None:
    route = RouteSettings(
        name="orders",
        match=RouteMatch(path="/orders", methods=["GET", "POST"]),
        upstream=echo.url,
        auth=["jwt"],
        scopes={"GET": ["orders:read"], "POST": ["orders:write"]},
    )
    reader = Gateway([route], authenticators={"jwt": granting("orders:read")})
    assert (await call(reader, "GET", "/orders")).status == 200
    assert (await call(reader, "HEAD", "/orders")).status == 200
    with pytest.raises(InsufficientScopeError) as caught:
        await call(reader, "POST", "/orders", body=b"{}")
    assert caught.value.required == ("orders:write",)
    assert caught.value.www_authenticate == (
        'Bearer realm="bastion", error="insufficient_scope", scope="orders:write"'
    )
    assert [r.method for r in echo.received] == ["GET", "HEAD"]
    writer = Gateway([route], authenticators={"jwt": granting("orders:write", "orders:read")})
    assert (await call(writer, "POST", "/orders", body=b"{}")).status == 200
    await reader.shutdown()
    await writer.shutdown()


async def test_one_list_for_every_method_and_uncovered_methods(echo: EchoServer) -> None:
    routes = [
        ScopedRoute("all", Match("/all"), echo.url, scopes=["s"]),
        ScopedRoute("some", Match("/some"), echo.url, scopes={"GET": []}),
        ScopedRoute("none", Match("/none"), echo.url),
    ]
    gateway = Gateway(routes, authenticators={"jwt": granting()})
    with pytest.raises(InsufficientScopeError):
        await call(gateway, "DELETE", "/all")
    assert (await call(gateway, "GET", "/some")).status == 200
    with pytest.raises(ForbiddenError) as caught:
        await call(gateway, "DELETE", "/some")
    assert caught.value.code == "forbidden"
    assert (await call(gateway, "DELETE", "/none")).status == 200
    await gateway.shutdown()


async def test_public_routes_are_not_checked(echo: EchoServer) -> None:
    gateway = Gateway([ScopedRoute("pub", Match("/pub"), echo.url, public=True, auth=())])
    assert (await call(gateway, "GET", "/pub")).status == 200
    await gateway.shutdown()


def test_an_invalid_scopes_value_is_a_config_error() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        Gateway([ScopedRoute("bad", Match("/bad"), "http://127.0.0.1:9", scopes="orders:read")])
    assert caught.value.detail == (
        "routes[bad].scopes: scopes must be a list of scope names, got 'orders:read'"
    )


def test_required_scopes_are_compiled_once_per_route() -> None:
    gateway = Gateway(
        [ScopedRoute("a", Match("/a"), "http://127.0.0.1:9", scopes={"GET": ["r"], "*": []})]
    )
    compiled = gateway.required_scopes["a"]
    assert isinstance(compiled, RequiredScopes)
    assert compiled.for_method("PATCH") == frozenset()
