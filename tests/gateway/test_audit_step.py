"""The gateway's audit step: every denial recorded (no I/O), allowed requests counted."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.audit.events import Auditor, EventTypes
from bastion.demo.echo import EchoServer
from bastion.errors import BastionError
from bastion.gateway.authz import InsufficientScopeError
from bastion.gateway.errors import RouteNotFoundError, UnauthenticatedError
from bastion.gateway.pipeline import Exchange, Gateway, Identity
from bastion.settings import RouteMatch, RouteSettings
from gateway.gateway_support import call, route


def _with_request_id(app: Gateway) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "bastion.request_id": "req-42"}, receive, send)

    return wrapped


def _gateway(echo: EchoServer, auditor: Auditor | None, **kw: Any) -> Gateway:
    async def key(ex: Exchange) -> Identity | None:
        token = dict(ex.scope["headers"]).get(b"x-key")
        if token is None:
            return None
        if token == b"good":
            return Identity(method="api_key", subject="user-1", key_id="k1", scopes=frozenset())
        if token == b"client":
            return Identity(
                method="jwt", subject="svc", claims={"client_id": "svc"}, scopes=frozenset()
            )
        raise UnauthenticatedError("invalid key")

    return Gateway(
        [
            RouteSettings(
                name="orders",
                match=RouteMatch(path="/orders"),
                upstream=echo.url,
                auth=["api_key"],
                scopes=["orders:read"],
            ),
            route("open", "/open", echo.url, public=False, auth=["api_key"]),
            route("pub", "/pub", echo.url, public=True),
        ],
        authenticators={"api_key": key},
        trusted_proxies=["10.0.0.0/8"],
        auditor=auditor,
        **kw,
    )


async def test_denials_are_recorded_with_reason_route_ip_and_request_id(echo: EchoServer) -> None:
    auditor = Auditor()
    app = _with_request_id(_gateway(echo, auditor))
    headers = [("user-agent", "curl/8\r\nforged: line"), ("x-key", "bad")]
    with pytest.raises(UnauthenticatedError):
        await call(app, "GET", "/orders/1", headers=headers)
    (event,) = auditor.take(10)
    assert event.type == EventTypes.GATEWAY_DENIED
    assert (event.outcome, event.reason, event.route) == ("denied", "unauthenticated", "orders")
    assert (event.ip, event.request_id) == ("203.0.113.7", "req-42")
    assert event.user_agent == "curl/8\\x0d\\x0aforged: line"
    assert (event.subject, event.key_id, event.client_id) == (None, None, None)
    assert event.data == {
        "status": 401,
        "step": "authenticate",
        "method": "GET",
        "path": "/orders/1",
    }
    assert "bad" not in repr(event)  # the credential is never recorded


async def test_a_known_identity_is_named_in_the_denial(echo: EchoServer) -> None:
    auditor = Auditor()
    gateway = _gateway(echo, auditor)
    with pytest.raises(InsufficientScopeError):
        await call(gateway, "GET", "/orders", headers=[("x-key", "good")])
    with pytest.raises(InsufficientScopeError):
        await call(gateway, "GET", "/orders", headers=[("x-key", "client")])
    first, second = auditor.take(10)
    assert (first.reason, first.subject, first.key_id) == ("insufficient_scope", "user-1", "k1")
    assert first.data["step"] == "authorize"
    assert (second.subject, second.client_id, second.key_id) == ("svc", "svc", None)


async def test_client_ip_behind_a_trusted_proxy(echo: EchoServer) -> None:
    auditor = Auditor()
    gateway = _gateway(echo, auditor)
    with pytest.raises(RouteNotFoundError):
        await call(
            gateway,
            "GET",
            "/nowhere",
            client=("10.1.2.3", 5000),
            headers=[("x-forwarded-for", "198.51.100.1, 192.0.2.44")],
        )
    (event,) = auditor.take(10)
    assert (event.ip, event.route, event.reason) == ("192.0.2.44", None, "route_not_found")
    assert event.request_id is None  # no request-id middleware in front


async def test_allowed_requests_are_counted_not_recorded(echo: EchoServer) -> None:
    auditor = Auditor()
    gateway = _gateway(echo, auditor)
    for _ in range(3):
        assert (await call(gateway, "GET", "/open", headers=[("x-key", "good")])).status == 200
    assert (await call(gateway, "GET", "/open", headers=[("x-key", "client")])).status == 200
    assert (await call(gateway, "GET", "/pub")).status == 200
    assert auditor.take(10) == []
    counts = {(c.route, c.principal, c.principal_id): c.count for c in auditor.traffic.take_all()}
    assert counts == {
        ("open", "key", "k1"): 3,
        ("open", "client", "svc"): 1,
        ("pub", "anonymous", None): 1,
    }
    await gateway.shutdown()


async def test_without_an_auditor_nothing_is_recorded(echo: EchoServer) -> None:
    gateway = _gateway(echo, None)
    with pytest.raises(BastionError):
        await call(gateway, "GET", "/orders", headers=[("x-key", "bad")])
    assert gateway.auditor is None
