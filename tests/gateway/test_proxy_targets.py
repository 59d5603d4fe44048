"""Several targets per route over real sockets: failover, ejection, no retry for POST."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bastion.demo.echo import EchoServer, start_echo_server
from bastion.gateway.errors import NoHealthyUpstreamError, UpstreamUnavailableError
from bastion.gateway.pipeline import Gateway
from bastion.gateway.upstreams import HealthPolicy
from gateway.gateway_support import Match, Route, call


@dataclass(frozen=True)
class Health:
    failures: int = 2
    cooldown: float = 30.0
    max_cooldown: float = 60.0


@dataclass(frozen=True)
class TargetsRoute(Route):
    health: Any = None


def targets_route(urls: list[str], **kw: Any) -> TargetsRoute:
    return TargetsRoute(name="multi", match=Match(path="/"), upstream=urls, **kw)  # type: ignore[arg-type]


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there


class Hangup:
    """An upstream that reads a request head, records it and closes without answering."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.split(b"\r\n", 1)[0])
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def echoes() -> AsyncIterator[list[EchoServer]]:
    servers = [await start_echo_server(), await start_echo_server()]
    try:
        yield servers
    finally:
        for server in servers:
            await server.close()


async def test_round_robin_spreads_requests(echoes: list[EchoServer]) -> None:
    gw = Gateway([targets_route([e.url for e in echoes])])
    for _ in range(4):
        assert (await call(gw, "GET", "/x")).status == 200
    assert [len(e.received) for e in echoes] == [2, 2]
    await gw.shutdown()


async def test_killed_target_is_skipped_and_get_is_retried(echoes: list[EchoServer]) -> None:
    first, second = echoes
    gw = Gateway([targets_route([first.url, second.url], health=Health())])
    await first.close()  # "kill one": connections to it are refused from now on
    for _ in range(6):
        assert (await call(gw, "GET", "/x")).status == 200
    assert len(second.received) == 6
    # After 2 connection failures the dead target is ejected: no more attempts on it.
    state = gw.client.health.of(gw.matcher.routes[0].upstream)
    assert state.ejected_until > 0
    await gw.shutdown()


async def test_post_is_never_retried_on_another_target(echoes: list[EchoServer]) -> None:
    good = echoes[0]
    gw = Gateway([targets_route([dead_url(), good.url], health=Health(failures=5))])
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(gw, "POST", "/x", body=b"{}")  # round-robin starts with the dead one
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.status == 502
    assert len(good.received) == 0  # not retried
    assert (await call(gw, "POST", "/x", body=b"{}")).status == 200  # next in turn
    assert len(good.received) == 1
    await gw.shutdown()


async def test_request_sent_then_connection_dropped_is_not_retried(
    echoes: list[EchoServer],
) -> None:
    hangup = Hangup()
    url = await hangup.start()
    good = echoes[0]
    gw = Gateway([targets_route([url, good.url])])
    try:
        with pytest.raises(UpstreamUnavailableError) as caught:
            await call(gw, "POST", "/x", body=b"{}")
        assert caught.value.detail == "The upstream closed the connection without answering."
        assert hangup.requests == [b"POST /x HTTP/1.1"]  # exactly one attempt
        assert len(good.received) == 0
    finally:
        await gw.shutdown()
        await hangup.close()


async def test_every_target_down_is_503_without_connecting() -> None:
    gw = Gateway([targets_route([dead_url(), dead_url()], health=Health(failures=1))])
    with pytest.raises(UpstreamUnavailableError) as first:
        await call(gw, "GET", "/x")  # both tried (GET is retried), both ejected
    assert first.value.status == 502
    with pytest.raises(NoHealthyUpstreamError) as caught:
        await call(gw, "GET", "/x")
    assert (caught.value.status, caught.value.code) == (503, "upstream_unavailable")
    assert caught.value.detail == "Every upstream target of this route is failing; retry later."
    assert 1 <= caught.value.retry_after <= 30
    await gw.shutdown()


async def test_route_connect_and_read_timeouts_apply(echoes: list[EchoServer]) -> None:
    slow = echoes[0]
    slow.delay = 2.0

    @dataclass(frozen=True)
    class TimedRoute(Route):
        read_timeout: float = 0.2
        connect_timeout: float = 1.0

    gw = Gateway([TimedRoute(name="t", match=Match(path="/"), upstream=slow.url)])
    from bastion.gateway.errors import UpstreamTimeoutError

    with pytest.raises(UpstreamTimeoutError):
        await call(gw, "GET", "/x")
    await gw.shutdown()


def test_health_policy_from_settings() -> None:
    from bastion.settings.models import RouteSettings

    settings = RouteSettings.model_validate(
        {
            "name": "m",
            "match": {"path": "/"},
            "upstream": ["http://a.internal", "http://b.internal"],
            "public": True,
            "health": {"failures": 4, "cooldown": 2, "max_cooldown": 60},
        }
    )
    gw = Gateway([settings])
    route = gw.matcher.routes[0]
    assert route.targets is not None
    assert route.targets.policy == HealthPolicy(failures=4, cooldown=2.0, max_cooldown=60.0)
    assert [u.host for u in route.targets.upstreams] == ["a.internal", "b.internal"]
