"""End to end: WebSocket routes served by the native core (``native/src/websocket.rs``).

A real ``bastion serve`` (native engine), a real websockets upstream and client.
Asserted, each with the plane that answered (the request id's prefix: the native
front's, never Python's):

- the route is listed ``native``; a plain HTTP request to it is proxied natively;
- messages both ways, the subprotocol the upstream chose, no compression offered
  upstream, the key never forwarded; close codes relayed both ways;
- a refused key: 401 ``invalid_api_key`` problem+json before any upstream handshake, with
  the head of Python's ``websocket.http.response`` denial (the request id in the document);
- a message over ``max_message_size``: 1009 to the client, 1001 to the upstream;
- no message for ``idle_timeout``: 1001 "idle timeout" to the client;
- an unreachable upstream, one answering 200: 502 ``upstream_unavailable`` with Python's
  details;
- an upgrade to a route without ``websocket``: Python's 403 ``websocket_not_allowed``,
  rendered natively.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from _support import BastionProcess, EchoThread, free_port, run_cli
from _support.waiting import wait_until_async
from bastion.storage import Database

MAX = 64


class Upstream:
    """A websockets echo server choosing ``chat.v2``; records handshakes and close codes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handshakes: list[dict[str, str]] = []
        self.closes: list[int | None] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.handshakes.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        try:
            async for message in ws:
                if message == "close-4001":
                    await ws.close(4001, "asked to")
                    break
                await ws.send(message)
        finally:
            await ws.wait_closed()
            self.closes.append(ws.close_code)

    async def _start(self) -> Any:
        return await serve(
            self._handler,
            "127.0.0.1",
            self.port,
            compression=None,
            select_subprotocol=_chat_v2,
            max_size=None,
        )

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _chat_v2(_: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    return Subprotocol("chat.v2") if "chat.v2" in offered else None


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    try:
        yield server
    finally:
        server.close()


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # bastion's self-signed development certificate
    return context


def _prefix(request_id: str) -> str:
    return request_id.rsplit("-", 1)[0]


def _chat(base: str, auth: dict[str, str]) -> Any:
    return connect(f"{base}/chat", ssl=_insecure(), proxy=None, additional_headers=auth)


@pytest.fixture
def http_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


def test_websocket_routes_are_served_natively(
    tmp_path: Path, upstream: Upstream, http_upstream: EchoThread
) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        "server: {engine: native}\n"
        "routes:\n"
        "  - name: chat\n"
        "    match: {path: /chat}\n"
        f"    upstream: http://127.0.0.1:{upstream.port}\n"
        "    auth: [api_key]\n"
        f"    websocket: {{enabled: true, max_message_size: {MAX}, idle_timeout: 1}}\n"
        "  - name: gone\n"
        "    match: {path: /gone}\n"
        f"    upstream: http://127.0.0.1:{free_port()}\n"
        "    public: true\n"
        "    websocket: true\n"
        "  - name: http-only\n"
        "    match: {path: /http-only}\n"
        f"    upstream: {http_upstream.server.url}\n"
        "    public: true\n"
        "    websocket: true\n"
        "  - name: plain\n"
        "    match: {path: /plain}\n"
        f"    upstream: http://127.0.0.1:{upstream.port}\n"
        "    public: true\n"
    )
    created = run_cli("keys", "create", "ws-client", "-c", str(config), "--json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = orjson.loads(created.stdout)["key"]
    auth = {"Authorization": f"Bearer {key}"}
    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        base = proc.url.replace("https://", "wss://")
        with httpx.Client(verify=False, base_url=proc.url) as http:
            # A plain request to a WebSocket route is proxied (the websockets upstream
            # refuses it: 426), natively, the key's first request (its lookup) included.
            python_plane = _prefix(http.get("/healthz").headers["x-request-id"])
            first = http.get("/chat", headers=auth)
            plain = http.get("/chat", headers=auth)
            assert first.status_code == plain.status_code == 426
            native_plane = _prefix(plain.headers["x-request-id"])
            assert _prefix(first.headers["x-request-id"]) == native_plane
        assert native_plane != python_plane

        async def scenario() -> None:
            # A key Python refuses: 401 before any upstream handshake, natively.
            with pytest.raises(InvalidStatus) as bad:
                async with connect(
                    f"{base}/chat/room",
                    ssl=_insecure(),
                    proxy=None,
                    additional_headers={"Authorization": "Bearer bst_not_a_key"},
                ):
                    pass
            response = bad.value.response
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            body = orjson.loads(response.body)
            assert body["reason"] == "invalid_api_key"
            assert body["status"] == 401
            # As Python refuses a handshake (`websocket.http.response`): the request id is in
            # the document only, and the connection closes.
            assert "x-request-id" not in response.headers
            assert response.headers["connection"] == "close"
            assert _prefix(body["request_id"]) == native_plane
            assert upstream.handshakes == []

            # An upstream that cannot be reached: Python's 502, rendered natively.
            with pytest.raises(InvalidStatus) as gone:
                async with connect(f"{base}/gone", ssl=_insecure(), proxy=None):
                    pass
            response = gone.value.response
            assert response.status_code == 502
            body = orjson.loads(response.body)
            assert body["reason"] == "upstream_unavailable"
            assert body["detail"] == "The upstream could not be reached."
            assert _prefix(response.headers["x-request-id"]) == native_plane

            # An upstream that answers the upgrade with a plain 200.
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{base}/http-only", ssl=_insecure(), proxy=None):
                    pass
            response = refused.value.response
            assert response.status_code == 502
            body = orjson.loads(response.body)
            assert body["reason"] == "upstream_unavailable"
            assert body["detail"] == "The upstream refused the WebSocket upgrade (status 200)."
            assert _prefix(response.headers["x-request-id"]) == native_plane

            # A route without websocket: Python's refusal, rendered natively.
            with pytest.raises(InvalidStatus) as plain_ws:
                async with connect(f"{base}/plain", ssl=_insecure(), proxy=None):
                    pass
            assert plain_ws.value.response.status_code == 403
            body = orjson.loads(plain_ws.value.response.body)
            assert body["reason"] == "websocket_not_allowed"
            assert _prefix(body["request_id"]) == native_plane

            # Messages both ways, the upstream's subprotocol, its close code relayed.
            async with connect(
                f"{base}/chat/room?x=1",
                ssl=_insecure(),
                proxy=None,
                additional_headers=auth,
                subprotocols=[Subprotocol("chat.v1"), Subprotocol("chat.v2")],
            ) as ws:
                assert ws.response is not None
                assert ws.response.status_code == 101
                assert _prefix(ws.response.headers["x-request-id"]) == native_plane
                assert ws.subprotocol == "chat.v2"
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\x01binary")
                assert await ws.recv() == b"\x00\x01binary"
                await ws.send("close-4001")
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert ws.close_code == 4001
            assert ws.close_reason == "asked to"
            seen = upstream.handshakes[0]
            assert "authorization" not in seen
            assert key not in orjson.dumps(seen).decode()
            assert "sec-websocket-extensions" not in seen  # no compression upstream
            assert seen["sec-websocket-protocol"] == "chat.v1, chat.v2"
            assert seen["x-forwarded-proto"] == "https"
            assert any(name.startswith("x-bastion-") for name in seen)
            await wait_until_async(lambda: len(upstream.closes) == 1, "1 closes upstream")
            assert upstream.closes == [4001]

            # The client's close code goes upstream.
            async with _chat(base, auth) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                await ws.close(4002, "bye")
            await wait_until_async(lambda: len(upstream.closes) == 2, "2 closes upstream")
            assert upstream.closes[1] == 4002

            # A message over max_message_size: 1009 to the client, 1001 upstream.
            async with _chat(base, auth) as ws:
                await ws.send("y" * MAX)  # at the limit: relayed
                assert await ws.recv() == "y" * MAX
                await ws.send(b"z" * (MAX + 1))
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
            assert ws.close_code == 1009
            assert ws.close_reason == "message too big"
            await wait_until_async(lambda: len(upstream.closes) == 3, "3 closes upstream")
            assert upstream.closes[2] == 1001

            # Idle for idle_timeout (1 s): 1001.
            async with _chat(base, auth) as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
            assert ws.close_reason == "idle timeout"
            await wait_until_async(lambda: len(upstream.closes) == 4, "4 closes upstream")
            assert upstream.closes[3] == 1000

            # The native refusals are audited as Python's WebSocket door records them.
            async def denied() -> dict[str, Any]:
                db = await Database.connect(f"sqlite:///{tmp_path}/bastion.db")
                try:
                    page = await db.audit.search(type="gateway.denied", limit=100)
                    return {r.reason: r.data for r in page.items}
                finally:
                    await db.close()

            rows: dict[str, Any] = {}
            for _ in range(100):
                rows = await denied()
                if {"invalid_api_key", "upstream_unavailable"} <= rows.keys():
                    break
                await asyncio.sleep(0.1)
            key_row, upstream_row = rows["invalid_api_key"], rows["upstream_unavailable"]
            assert (key_row["door"], key_row["step"], key_row["status"]) == (
                "websocket",
                "authenticate",
                401,
            )
            assert (key_row["method"], key_row["path"]) == ("GET", "/chat/room")
            assert (upstream_row["door"], upstream_row["step"]) == ("websocket", "proxy")

        asyncio.run(scenario())
