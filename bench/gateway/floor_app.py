"""The ceiling of a Python data plane here: a proxy with no features at all (case (f)).

An ASGI app that forwards every request to ``UP_PORT`` over pooled keep-alive
connections (``asyncio.Protocol`` + ``httptools``), with none of what a gateway
must do: no timeouts, no header hygiene, no identity, no limits, no error
handling. ``bench/gateway/run.py`` serves it with the same engine as bastion, so
bastion's figures can be read against what the language and server allow,
not only against nginx. Never use it for anything else.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httptools

PORT = int(os.environ.get("UP_PORT", "0"))
_HOP = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})


class _Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: Any = None
        self.done: asyncio.Future[None] | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("upstream closed"))

    def on_message_begin(self) -> None:
        self.headers = []
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done is not None:
            self.done.set_result(None)


_pool: list[_Upstream] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await receive()
    loop = asyncio.get_running_loop()
    if _pool:
        conn = _pool.pop()
    else:
        _, conn = await loop.create_connection(_Upstream, "127.0.0.1", PORT)
    conn.done = loop.create_future()
    head = b"".join(n + b": " + v + b"\r\n" for n, v in scope["headers"] if n != b"host")
    conn.transport.write(
        b"%s %s HTTP/1.1\r\nhost: upstream\r\n%s\r\n"
        % (scope["method"].encode(), scope["raw_path"], head)
    )
    await conn.done
    headers = [(n, v) for n, v in conn.headers if n not in _HOP]
    await send(
        {"type": "http.response.start", "status": conn.parser.get_status_code(), "headers": headers}
    )
    await send({"type": "http.response.body", "body": b"".join(conn.body)})
    _pool.append(conn)
