"""Gateway.reload: the route table swapped atomically; requests in flight keep their generation."""

from __future__ import annotations

import asyncio

import pytest

from bastion.demo.echo import EchoServer
from bastion.gateway.errors import GatewayConfigError, RouteNotFoundError
from bastion.gateway.pipeline import Exchange, Gateway, Step
from gateway.gateway_support import call, make_receive, make_scope, route


async def test_reload_adds_and_removes_routes(echo: EchoServer) -> None:
    gw = Gateway([route("a", "/a", echo.url)])
    client = gw.client
    assert (await call(gw, "GET", "/a/x")).status == 200
    gw.reload([route("b", "/b", echo.url)])
    assert (await call(gw, "GET", "/b/x")).status == 200
    with pytest.raises(RouteNotFoundError):
        await call(gw, "GET", "/a/x")
    assert gw.client is client  # pools and target health are kept
    assert [r.name for r in gw.matcher.routes] == ["b"]  # readers of the gateway see it too
    await gw.shutdown()


async def test_invalid_routes_keep_the_current_table(echo: EchoServer) -> None:
    gw = Gateway([route("a", "/a", echo.url)])
    with pytest.raises(GatewayConfigError):
        gw.reload([route("a", "/a", "ftp://nope")])
    assert (await call(gw, "GET", "/a/x")).status == 200
    await gw.shutdown()


async def test_request_in_flight_finishes_on_its_generation(echo: EchoServer) -> None:
    release = asyncio.Event()
    seen: list[object] = []

    async def pause(ex: Exchange) -> None:
        await release.wait()
        seen.append(ex.gateway.required_scopes.get("a"))  # still the old table

    gw = Gateway([route("a", "/a", echo.url)])
    steps = (gw.steps[0], Step("pause", pause), *gw.steps[1:])
    gw = Gateway([route("a", "/a", echo.url)], steps=steps)
    gw.marker = "set later"  # type: ignore[attr-defined]
    from gateway.gateway_support import Recorder

    send = Recorder()
    task = asyncio.ensure_future(gw(make_scope("GET", "/a/x"), make_receive(), send))
    await asyncio.sleep(0.05)
    gw.reload([route("b", "/b", echo.url)])
    release.set()
    await asyncio.wait_for(task, 10)
    assert send.result().status == 200  # route "a" no longer exists, the request completed
    assert seen and seen[0] is not None
    assert gw._active.marker == "set later"  # type: ignore[attr-defined]
    await gw.shutdown()
