"""The step table and the Gateway ASGI app, driven with hand-built scopes."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.demo.echo import EchoServer
from bastion.gateway import pipeline
from bastion.gateway.errors import (
    BadRequestPathError,
    MethodNotAllowedError,
    RouteNotFoundError,
    UnauthenticatedError,
)
from bastion.gateway.pipeline import STEPS, Exchange, Gateway, Identity, Step
from gateway.gateway_support import Recorder, call, make_receive, route


def test_the_table_order() -> None:
    assert [step.name for step in STEPS] == [
        "framing",
        "match",
        "ip",
        "cors",
        "body",
        "authenticate",
        "authorize",
        "limit",
        "mutate",
        "proxy",
    ]
    assert all(step.fail == "closed" for step in STEPS)


@pytest.mark.parametrize(
    "name",
    ["framing", "match", "ip", "cors", "body", "authenticate", "authorize", "limit", "mutate"],
)
def test_security_steps_cannot_fail_open(name: str) -> None:
    async def run(ex: Exchange) -> None:
        return None

    with pytest.raises(ValueError, match=f"gateway step '{name}' must fail closed"):
        Step(name, run, fail="open")


async def test_public_route_is_proxied_anonymously(echo: EchoServer) -> None:
    seen: list[Identity | None] = []

    async def spy(ex: Exchange) -> None:
        seen.append(ex.identity)

    after = [step.name for step in STEPS].index("authenticate") + 1
    steps = (*STEPS[:after], Step("spy", spy), *STEPS[after:])
    gateway = Gateway([route("pub", "/pub", echo.url, public=True)], steps=steps)
    result = await call(gateway, "GET", "/pub/x")
    assert result.status == 200
    assert result.json()["path"] == "/pub/x"
    assert seen == [pipeline.ANONYMOUS]
    assert seen[0] is not None and seen[0].anonymous
    await gateway.shutdown()


async def test_non_public_route_without_authenticators_fails_closed(echo: EchoServer) -> None:
    gateway = Gateway([route("priv", "/priv", echo.url, public=False, auth=["api_key", "jwt"])])
    with pytest.raises(UnauthenticatedError) as caught:
        await call(gateway, "GET", "/priv/x", headers=[("authorization", "Bearer whatever")])
    assert caught.value.code == "unauthenticated"
    assert caught.value.status == 401
    assert caught.value.detail == "This route requires authentication."
    assert caught.value.www_authenticate == 'Bearer realm="bastion"'
    assert len(echo.received) == 0 and echo.connections == 0


async def test_authenticators_allow_deny_not_responsible(echo: EchoServer) -> None:
    calls: list[str] = []

    async def not_responsible(ex: Exchange) -> Identity | None:
        calls.append("api_key")
        return None

    async def vouches(ex: Exchange) -> Identity | None:
        calls.append("jwt")
        return Identity(method="jwt", subject="alice", scopes=frozenset({"read"}))

    async def denies(ex: Exchange) -> Identity | None:
        raise UnauthenticatedError("The token is expired.")

    routes = [
        route("a", "/a", echo.url, public=False, auth=["api_key", "jwt"]),
        route("b", "/b", echo.url, public=False, auth=["session", "jwt"]),
        route("c", "/c", echo.url, public=False, auth=["api_key"]),
    ]
    gateway = Gateway(
        routes, authenticators={"api_key": not_responsible, "jwt": vouches, "session": denies}
    )
    assert (await call(gateway, "GET", "/a")).status == 200
    assert calls == ["api_key", "jwt"]
    with pytest.raises(UnauthenticatedError, match=r"^The token is expired\.$"):
        await call(gateway, "GET", "/b")
    calls.clear()
    with pytest.raises(UnauthenticatedError, match=r"^This route requires authentication\.$"):
        await call(gateway, "GET", "/c")
    assert calls == ["api_key"]
    assert len(echo.received) == 1
    await gateway.shutdown()


async def test_unmatched_and_bad_paths_are_never_proxied(echo: EchoServer) -> None:
    gateway = Gateway([route("api", "/api", echo.url, methods=["GET"])])
    with pytest.raises(RouteNotFoundError):
        await call(gateway, "GET", "/apix")
    with pytest.raises(RouteNotFoundError):
        await call(gateway, "GET", "/other/../apix", raw_path=b"/other/../apix")
    with pytest.raises(MethodNotAllowedError):
        await call(gateway, "POST", "/api/x")
    with pytest.raises(BadRequestPathError):
        await call(gateway, "GET", "/api/x", raw_path=b"/api%2f..%2fadmin")
    with pytest.raises(BadRequestPathError):
        await call(gateway, "GET", "/../api", raw_path=b"/../api")
    assert echo.connections == 0


async def test_matching_uses_the_normalised_raw_path(echo: EchoServer) -> None:
    gateway = Gateway([route("api", "/api", echo.url)])
    result = await call(gateway, "GET", "/x/../api/y", raw_path=b"/x/..//%61pi/./y")
    assert result.json()["path"] == "/api/y"
    # Without raw_path the decoded path is re-encoded and normalised the same way.
    scope_kw: dict[str, Any] = {"raw_path": b""}
    result = await call(gateway, "GET", "/api/a b", **scope_kw)
    assert result.json()["path"] == "/api/a%20b"
    await gateway.shutdown()


async def test_fail_open_and_fail_closed_steps(echo: EchoServer) -> None:
    async def broken(ex: Exchange) -> None:
        raise RuntimeError("bug")

    routes = [route("pub", "/", echo.url)]
    open_gateway = Gateway(routes, steps=(*STEPS[:2], Step("extra", broken, "open"), *STEPS[2:]))
    assert (await call(open_gateway, "GET", "/x")).status == 200
    closed = Gateway(routes, steps=(*STEPS[:2], Step("extra", broken, "closed"), *STEPS[2:]))
    with pytest.raises(RuntimeError, match="bug"):
        await call(closed, "GET", "/x")
    assert len(echo.received) == 1
    await open_gateway.shutdown()


async def test_lifespan_closes_pools(echo: EchoServer) -> None:
    gateway = Gateway([route("pub", "/", echo.url)])
    await call(gateway, "GET", "/")
    assert gateway.client.pools
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, Any]:
        return next(messages)

    send = Recorder()
    await gateway({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in send.messages] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert gateway.client.pools == {}


async def test_websocket_refused_on_a_route_without_websocket() -> None:
    from bastion.gateway.websocket import WebSocketNotAllowedError

    gateway = Gateway([route("pub", "/")])
    send = Recorder()
    scope = {"type": "websocket", "path": "/", "raw_path": b"/", "headers": [(b"host", b"gw.test")]}
    with pytest.raises(WebSocketNotAllowedError) as caught:
        await gateway(scope, make_receive(), send)
    assert (caught.value.status, caught.value.code) == (403, "websocket_not_allowed")
    assert send.messages == []  # the HTTP layer renders the denial
