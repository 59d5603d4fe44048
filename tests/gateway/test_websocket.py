"""The WebSocket relay against a real websockets upstream, driven by hand-built ASGI messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bastion.gateway.errors import UpstreamUnavailableError
from bastion.gateway.pipeline import Gateway
from bastion.http.middleware.errors import ErrorMiddleware
from gateway.gateway_support import Match, Route


@dataclass(frozen=True)
class WS:
    enabled: bool = True
    idle_timeout: float = 30.0
    max_duration: float = 60.0
    max_message_size: int = 1024


@dataclass(frozen=True)
class WSRoute(Route):
    websocket: WS = field(default_factory=WS)


class Upstream:
    def __init__(self) -> None:
        self.closed_with: list[int | None] = []
        self.paths: list[str] = []
        self.server: Any = None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            self.closed_with.append(ws.close_code)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    up.server = await serve(up.handler, "127.0.0.1", 0, compression=None)
    try:
        yield up
    finally:
        up.server.close()
        await up.server.wait_closed()


class Client:
    """The ASGI side: a queue of messages the 'client' sends, and what bastion sent it."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.got = asyncio.Event()
        self.inbox.put_nowait({"type": "websocket.connect"})

    async def receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.got.set()

    async def next_sent(self) -> dict[str, Any]:
        while True:
            count = len(self.sent)
            await asyncio.wait_for(self.got.wait(), 10)
            self.got.clear()
            if len(self.sent) > count or self.sent:
                return self.sent[-1]


def ws_scope(path: str = "/ws/a", query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "websocket",
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": [(b"host", b"gw.test")],
        "client": ("203.0.113.9", 5000),
        "extensions": {},
    }


def gateway_for(url: str, **ws: Any) -> Gateway:
    return Gateway([WSRoute(name="ws", match=Match(path="/ws"), upstream=url, websocket=WS(**ws))])


async def test_messages_relayed_and_client_close_reaches_upstream(upstream: Upstream) -> None:
    gw, client = gateway_for(upstream.url), Client()
    task = asyncio.ensure_future(gw(ws_scope(query=b"x=1"), client.receive, client.send))
    assert (await client.next_sent())["type"] == "websocket.accept"
    client.inbox.put_nowait({"type": "websocket.receive", "text": "hi"})
    assert await client.next_sent() == {"type": "websocket.send", "text": "hi"}
    client.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x01"})
    assert await client.next_sent() == {"type": "websocket.send", "bytes": b"\x01"}
    client.inbox.put_nowait({"type": "websocket.disconnect", "code": 4002})
    await asyncio.wait_for(task, 10)
    assert upstream.paths == ["/ws/a?x=1"]
    await asyncio.sleep(0.05)
    assert upstream.closed_with == [4002]
    await gw.shutdown()


async def test_idle_connection_is_closed(upstream: Upstream) -> None:
    gw, client = gateway_for(upstream.url, idle_timeout=0.2), Client()
    await asyncio.wait_for(gw(ws_scope(), client.receive, client.send), 10)
    assert client.sent[0]["type"] == "websocket.accept"
    assert client.sent[-1] == {"type": "websocket.close", "code": 1001, "reason": "idle timeout"}
    await gw.shutdown()


async def test_too_big_message_closes_with_1009(upstream: Upstream) -> None:
    gw, client = gateway_for(upstream.url, max_message_size=8), Client()
    client.inbox.put_nowait({"type": "websocket.receive", "text": "x" * 9})
    await asyncio.wait_for(gw(ws_scope(), client.receive, client.send), 10)
    assert client.sent[-1] == {"type": "websocket.close", "code": 1009, "reason": "message too big"}
    await gw.shutdown()


async def test_unreachable_upstream_is_refused_before_accept() -> None:
    gw, client = gateway_for("http://127.0.0.1:9"), Client()
    with pytest.raises(UpstreamUnavailableError):
        await gw(ws_scope(), client.receive, client.send)
    assert client.sent == []


async def test_denial_is_an_http_response_with_the_extension() -> None:
    app = ErrorMiddleware(gateway_for("http://127.0.0.1:9"))
    client = Client()
    scope = {**ws_scope("/nope"), "extensions": {"websocket.http.response": {}}}
    await app(scope, client.receive, client.send)
    start, body = client.sent
    assert start["type"] == "websocket.http.response.start" and start["status"] == 404
    assert body["type"] == "websocket.http.response.body"
    assert b'"reason":"route_not_found"' in body["body"]
    client = Client()
    await app(ws_scope("/nope"), client.receive, client.send)  # no extension: close 1008
    assert client.sent == [{"type": "websocket.close", "code": 1008, "reason": "route_not_found"}]


async def test_upgrades_are_audited_and_counted_by_the_one_runner(upstream: Upstream) -> None:
    # Design rule 14: every door into a decision goes through the runner that audits,
    # counts and traces it; an upgrade is the "websocket" door.
    from bastion.audit.events import Auditor, EventTypes
    from bastion.audit.metrics import Metrics

    auditor, metrics = Auditor(), Metrics(process=False)
    route = WSRoute(name="ws", match=Match(path="/ws"), upstream=upstream.url, websocket=WS())
    gw = Gateway([route], auditor=auditor, metrics=metrics)
    refused = Client()
    with pytest.raises(Exception, match="route"):
        await gw(ws_scope("/nope"), refused.receive, refused.send)
    allowed = Client()
    allowed.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(gw(ws_scope(), allowed.receive, allowed.send), 10)
    [denied] = auditor.take(10)
    assert (denied.type, denied.reason) == (EventTypes.GATEWAY_DENIED, "route_not_found")
    assert denied.data["door"] == "websocket" and denied.data["step"] == "match"
    traffic = {(t.route, t.principal): t.count for t in auditor.traffic.take_all()}
    assert traffic == {("ws", "anonymous"): 1}
    counts = {
        (slot.label, outcome): n
        for slot in metrics._routes.values()
        for outcome, n in slot.counts().items()
    }
    assert counts[("ws", "allowed")] == 1 and sum(counts.values()) == 2
    await gw.shutdown()
