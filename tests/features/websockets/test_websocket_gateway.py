"""End to end: WebSocket pass-through on a real ``bastion serve``.

A websockets echo upstream records every handshake it accepts. Asserted:

- with a valid API key the client exchanges text and binary messages through bastion,
  the upstream sees the identity headers but never the key, and a close code travels
  from the upstream to the client;
- without a key (or with a bad one) the upgrade is refused with 401 problem+json before
  any upstream connection (the upstream saw nothing);
- a route without ``websocket: true`` refuses upgrades with 403 ``websocket_not_allowed``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from _support import BastionProcess, free_port, run_cli


class EchoWebSocket:
    """A websockets echo server on its own loop; records the request headers of each handshake."""

    def __init__(self) -> None:
        self.port = free_port()
        self.handshakes: list[dict[str, str]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.handshakes.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
        async for message in ws:
            if message == "close-4001":
                await ws.close(4001, "asked to")
                return
            await ws.send(message)

    async def _start(self) -> Any:
        return await serve(self._handler, "127.0.0.1", self.port, compression=None)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def upstream() -> Iterator[EchoWebSocket]:
    server = EchoWebSocket()
    try:
        yield server
    finally:
        server.close()


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # bastion's self-signed development certificate
    return context


def test_websocket_through_bastion(tmp_path: Path, upstream: EchoWebSocket) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        "routes:\n"
        "  - name: chat\n"
        "    match: {path: /chat}\n"
        f"    upstream: http://127.0.0.1:{upstream.port}\n"
        "    auth: [api_key]\n"
        "    websocket: true\n"
        "  - name: plain\n"
        "    match: {path: /plain}\n"
        f"    upstream: http://127.0.0.1:{upstream.port}\n"
        "    public: true\n"
    )
    created = run_cli("keys", "create", "ws-client", "-c", str(config), "--json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key = orjson.loads(created.stdout)["key"]
    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        base = proc.url.replace("https://", "wss://")

        async def scenario() -> None:
            # Refused without a key: 401 problem+json, nothing reached the upstream.
            with pytest.raises(InvalidStatus) as denied:
                async with connect(f"{base}/chat/room", ssl=_insecure(), proxy=None):
                    pass
            response = denied.value.response
            assert response.status_code == 401
            assert response.headers["content-type"].startswith("application/problem+json")
            assert orjson.loads(response.body)["reason"] == "unauthenticated"
            with pytest.raises(InvalidStatus) as bad:
                async with connect(
                    f"{base}/chat/room",
                    ssl=_insecure(),
                    proxy=None,
                    additional_headers={"Authorization": "Bearer bst_not_a_key"},
                ):
                    pass
            assert bad.value.response.status_code == 401
            assert upstream.handshakes == []

            # A route without websocket: true.
            with pytest.raises(InvalidStatus) as plain:
                async with connect(
                    f"{base}/plain",
                    ssl=_insecure(),
                    proxy=None,
                    additional_headers={"Authorization": f"Bearer {key}"},
                ):
                    pass
            assert plain.value.response.status_code == 403
            assert orjson.loads(plain.value.response.body)["reason"] == "websocket_not_allowed"
            assert upstream.handshakes == []

            # With the key: messages both ways, close code relayed.
            async with connect(
                f"{base}/chat/room?x=1",
                ssl=_insecure(),
                proxy=None,
                additional_headers={"Authorization": f"Bearer {key}"},
            ) as ws:
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00\x01binary")
                assert await ws.recv() == b"\x00\x01binary"
                await ws.send("close-4001")
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 4001
                assert ws.close_reason == "asked to"
            assert len(upstream.handshakes) == 1
            seen = upstream.handshakes[0]
            assert "authorization" not in seen  # the key is for bastion only
            assert key not in orjson.dumps(seen).decode()
            assert seen["x-forwarded-proto"] == "https"
            assert any(name.startswith("x-bastion-") for name in seen)

        asyncio.run(scenario())
