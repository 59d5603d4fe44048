"""The authorize step: required scopes per route and method, route restrictions, 403s.

Over real HTTP: one ``bastion serve`` whose routes require scopes (``orders``: per method;
``all``: one list for every method; ``pair``: two scopes; ``none``: none; ``pub``: public;
``billing``: another route), called with API keys (made by the real ``ApiKeyService`` on
the served database) carrying scopes and route allow-lists; the echo upstream shows what
was forwarded; each 403 is checked as its problem document, its challenge and its
``gateway.denied`` row. In process: the control plane's compilation of ``scopes``
(``compile_scopes``, the native route table's section) and the settings' refusals.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
from pydantic import ValidationError

from _support import EchoThread
from _support.gateway_authn import Keys, refused, upstream_saw
from _support.gateway_server import GatewayServer, fresh_echo, serve_gateway
from bastion.gateway.authz import compile_scopes
from bastion.gateway.compile.auth import section
from bastion.settings import RouteMatch, RouteSettings, Settings

ROUTES = {
    "orders": "    match: {path: /orders, methods: [GET, POST]}\n"
    "    scopes: {GET: [orders:read], POST: [orders:write]}\n",
    "all": "    match: {path: /all}\n    scopes: [s]\n",
    "pair": "    match: {path: /pair}\n    scopes: [orders:write, orders:read]\n",
    "none": "    match: {path: /none}\n",
    "billing": "    match: {path: /billing}\n",
}


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    up = echo_upstream.server.url
    text = "".join(
        f"  - name: {name}\n{match}    upstream: {up}\n    auth: [api_key]\n"
        for name, match in ROUTES.items()
    )
    text += f"  - name: pub\n    match: {{path: /pub}}\n    upstream: {up}\n    public: true\n"
    settings = "tls: off\ntrusted_proxies: [192.0.2.1]\n"
    with serve_gateway(tmp_path_factory.mktemp("scopes"), text, settings) as server:
        yield server


@pytest.fixture
def keys(served: GatewayServer) -> Keys:
    return Keys(served)


@pytest.fixture
def gateway(served: GatewayServer, echo_upstream: EchoThread) -> Iterator[httpx.Client]:
    fresh_echo(echo_upstream)
    with served.client() as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def insufficient(served: GatewayServer, response: httpx.Response, route: str, scope: str) -> None:
    refused(served, response, 403, "insufficient_scope", route, step="authorize")
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="bastion", error="insufficient_scope", scope="{scope}"'
    )
    assert response.json()["scope"] == scope


def test_the_table_has_authorize_between_authenticate_and_proxy(
    gateway: httpx.Client, keys: Keys, served: GatewayServer, echo_upstream: EchoThread
) -> None:
    # (the pipeline's step table, as a request meets it) Authenticate first: no credential
    # on a scoped route is a 401, not a 403; then authorize, before anything is proxied.
    refused(served, gateway.get("/all"), 401, "unauthenticated", "all")
    _, key = keys.create()
    insufficient(served, gateway.get("/all", headers=bearer(key)), "all", "s")
    assert list(echo_upstream.server.received) == []


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


def test_check_access(gateway: httpx.Client, keys: Keys, served: GatewayServer) -> None:
    # (check_access, as the requests of credentials meet it)
    _, reader = keys.create(scopes=["orders:read"])
    _, extra = keys.create(scopes=["orders:read", "x"], routes=["orders"])
    _, elsewhere = keys.create(scopes=["orders:read"], routes=["billing"])
    assert gateway.get("/orders", headers=bearer(reader)).status_code == 200
    assert gateway.get("/none", headers=bearer(reader)).status_code == 200
    assert gateway.get("/orders", headers=bearer(extra)).status_code == 200
    response = gateway.get("/orders", headers=bearer(elsewhere))
    refused(served, response, 403, "route_not_allowed", "orders", step="authorize")
    response = gateway.post("/orders", headers=bearer(reader), content=b"{}")
    insufficient(served, response, "orders", "orders:write")


def test_insufficient_scope_renders_rfc6750_challenge(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    _, key = keys.create(scopes=["orders:read"])
    response = gateway.get("/pair", headers=bearer(key))
    insufficient(served, response, "pair", "orders:read orders:write")
    assert response.headers["content-type"] == "application/problem+json"
    assert orjson.loads(response.content) == {
        "type": "urn:bastion:problem:insufficient_scope",
        "title": "Insufficient scope",
        "status": 403,
        "detail": "This request needs the scopes: orders:read orders:write.",
        "reason": "insufficient_scope",
        "scope": "orders:read orders:write",
        "request_id": response.headers["x-request-id"],
    }


def test_route_not_allowed_renders(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    _, key = keys.create(routes=["billing"])
    response = gateway.get("/none", headers=bearer(key))
    refused(served, response, 403, "route_not_allowed", "none", step="authorize")
    assert "www-authenticate" not in response.headers
    assert response.json()["detail"] == "This credential may not call this route."


# -- through the gateway ---------------------------------------------------------------------


def test_scopes_per_method_through_the_gateway(
    gateway: httpx.Client, keys: Keys, served: GatewayServer, echo_upstream: EchoThread
) -> None:
    _, reader = keys.create(scopes=["orders:read"])
    assert gateway.get("/orders", headers=bearer(reader)).status_code == 200
    assert gateway.head("/orders", headers=bearer(reader)).status_code == 200  # HEAD: GET's
    response = gateway.post("/orders", headers=bearer(reader), content=b"{}")
    insufficient(served, response, "orders", "orders:write")
    assert [r.method for r in echo_upstream.server.received] == ["GET", "HEAD"]
    _, writer = keys.create(scopes=["orders:write", "orders:read"])
    assert gateway.post("/orders", headers=bearer(writer), content=b"{}").status_code == 200


def test_one_list_for_every_method_and_uncovered_methods(
    gateway: httpx.Client, keys: Keys, served: GatewayServer
) -> None:
    _, key = keys.create()  # no scopes
    insufficient(served, gateway.delete("/all", headers=bearer(key)), "all", "s")
    assert gateway.delete("/none", headers=bearer(key)).status_code == 200
    # A mapping that names no rule for a method the route accepts is refused by the
    # settings: no request meets an uncovered method.
    with pytest.raises(ValidationError, match="names no scopes for POST, PUT, PATCH, DELETE"):
        RouteSettings(
            name="some",
            match=RouteMatch(path="/some"),
            upstream="http://127.0.0.1:9",
            auth=["api_key"],
            scopes={"GET": []},
        )


def test_public_routes_are_not_checked(gateway: httpx.Client) -> None:
    assert upstream_saw(gateway.get("/pub")).get("x-bastion-subject") is None


def test_an_invalid_scopes_value_is_a_config_error() -> None:
    with pytest.raises(ValidationError) as caught:
        RouteSettings(
            name="bad",
            match=RouteMatch(path="/bad"),
            upstream="http://127.0.0.1:9",
            auth=["api_key"],
            scopes="orders:read",
        )
    assert (
        "'orders:read' is not a list of scopes or a mapping of methods to scopes — use e.g. "
        "[orders:read] or {GET: [orders:read], POST: [orders:write]}"
    ) in str(caught.value)


def test_required_scopes_are_compiled_once_per_route() -> None:
    # Once, into the route's section of the native route table.
    route = RouteSettings(
        name="a",
        match=RouteMatch(path="/a"),
        upstream="http://127.0.0.1:9",
        auth=["api_key"],
        scopes={"GET": ["r"], "*": []},
    )
    compiled = section(route, Settings())
    assert isinstance(compiled, dict)
    assert compiled["scopes"] == {"by_method": {"GET": ["r"]}, "default": []}
    assert compile_scopes(route.scopes).for_method("PATCH") == frozenset()
