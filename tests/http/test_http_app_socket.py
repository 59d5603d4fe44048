"""The private app socket's protocol writes a response in one write (``bastion.http.app_socket``).

Unit: writes within one turn of the loop become one, in order; a large pending write goes at
once (flow control still applies); ``close`` writes what is pending first; nothing is written
to a closing transport. End to end: uvicorn with the protocol on a Unix socket answers a
request with head and body in one write of the real transport, and a streamed body in order.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from http_support import make_runtime, make_settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bastion import _native
from bastion.http import app_socket
from bastion.http.app import create_app
from bastion.http.app_socket import FLUSH_AT, CoalescingHttpToolsProtocol, CoalescingTransport
from bastion.http.server import run_server


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("extra", name)


async def test_writes_within_one_turn_become_one_write_in_order() -> None:
    real = Recording()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b"body")
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    transport.write(b"next")
    await asyncio.sleep(0)
    assert real.writes[1:] == [b"next"]
    # Anything else is the real transport's.
    assert transport.get_extra_info("peername") == ("extra", "peername")


async def test_a_large_pending_write_goes_at_once() -> None:
    real = Recording()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"h")
    transport.write(b"x" * FLUSH_AT)
    assert real.writes == [b"h" + b"x" * FLUSH_AT]
    await asyncio.sleep(0)
    assert len(real.writes) == 1


async def test_close_writes_what_is_pending_and_a_closing_transport_gets_nothing() -> None:
    real = Recording()
    transport = CoalescingTransport(real, asyncio.get_running_loop())
    transport.write(b"last")
    transport.close()
    assert (real.writes, real.closed) == ([b"last"], True)
    transport.write(b"late")
    await asyncio.sleep(0)
    assert real.writes == [b"last"]


def spying(writes: list[bytes]) -> type[CoalescingHttpToolsProtocol]:
    """The protocol, recording each write of the real transport into ``writes``."""

    class Spying(CoalescingHttpToolsProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            real_write = transport.write  # type: ignore[attr-defined]

            def write(data: bytes) -> None:
                writes.append(bytes(data))
                real_write(data)

            transport.write = write  # type: ignore[attr-defined]
            super().connection_made(transport)

    return Spying


async def test_uvicorn_answers_with_one_write_per_response(tmp_path: Path) -> None:
    writes: list[bytes] = []
    Spying = spying(writes)

    async def token(request: Request) -> Response:
        return JSONResponse({"access_token": "t"}, headers={"cache-control": "no-store"})

    async def stream(request: Request) -> Response:
        async def chunks() -> Any:
            for n in range(3):
                yield f"chunk{n};".encode()
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/token", token), Route("/stream", stream)])
    sock = str(tmp_path / "app.sock")
    config = uvicorn.Config(app, uds=sock, http=Spying, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_unix_connection(sock)
        writer.write(b"GET /token HTTP/1.1\r\nhost: app\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(len(b'{"access_token":"t"}'))
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b'{"access_token":"t"}'
        assert writes == [head + body]

        writes.clear()
        writer.write(b"GET /stream HTTP/1.1\r\nhost: app\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        streamed = await reader.readuntil(b"0\r\n\r\n")
        assert b"chunk0;" in streamed and streamed.index(b"chunk0;") < streamed.index(b"chunk2;")
        # The head and the first chunk together; each later chunk as it comes.
        assert len(writes) >= 3
        assert writes[0].endswith(b"chunk0;\r\n")
        writer.close()
    finally:
        server.should_exit = True
        await serving


async def test_the_server_serves_the_app_socket_with_this_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``run_server`` serves the private socket with this protocol: a request the native
    front hands to the app arrives on a connection the protocol made, written in one write."""
    writes: list[bytes] = []
    Spying = spying(writes)

    monkeypatch.setattr(app_socket, "CoalescingHttpToolsProtocol", Spying)
    _native.routes_unload()  # no table: the front hands every request to the app
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    settings = make_settings()
    app = create_app(make_runtime(settings=settings))
    task = asyncio.create_task(
        run_server(
            app,
            settings=settings,
            certfile=None,
            keyfile=None,
            on_ready=ready.set_result,
            stop=stop,
        )
    )
    try:
        await asyncio.wait({ready, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{ready.result()}/healthz")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    answers = [w for w in writes if w.startswith(b"HTTP/1.1 200 ")]
    assert len(answers) == 1 and answers[0].endswith(b'{"status":"ok"}')
