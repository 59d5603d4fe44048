"""The demo echo upstream: a tiny, fast HTTP/1.1 server (asyncio + httptools).

Every request is answered ``200`` with a JSON document describing it::

    {"method": "POST", "path": "/api/x", "query": "a=1",
     "headers": {"host": "...", ...},      # names lower-cased, repeats joined with ", "
     "body": "...", "body_encoding": "utf-8" | "base64",
     "upstream": "bastion demo echo"}

``path`` and ``query`` are exactly what arrived on the wire (not decoded), so
tests can assert what the gateway forwarded. The server keeps connections
alive, records the last requests in :attr:`EchoServer.received` and counts
accepted connections in :attr:`EchoServer.connections`.

Run it alone (the bare upstream of the benchmarks)::

    python -m bastion.demo.echo --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ssl
from collections import deque
from dataclasses import dataclass
from typing import cast

import httptools
import orjson

__all__ = ["EchoRequest", "EchoServer", "main", "start_echo_server"]

_SERVER_NAME = "bastion demo echo"


@dataclass(frozen=True, slots=True)
class EchoRequest:
    """One request as the echo server received it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in arrival order
    body: bytes
    connection: int  # sequence number of the connection it came on (1-based)

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (repeats joined with ", "), or None."""
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else None

    def document(self) -> dict[str, object]:
        """The JSON document the server answers with."""
        headers: dict[str, str] = {}
        for name, value in self.headers:
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        try:
            body, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body": body,
            "body_encoding": encoding,
            "upstream": _SERVER_NAME,
        }


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, server: EchoServer, number: int) -> None:
        self.server = server
        self.number = number
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.answered = 0
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.server._transports.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.server._transports.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        server = self.server
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if server.drop_after is not None and self.answered >= server.drop_after:
            transport.close()  # hang up without answering: a "stale" keep-alive connection
            return
        self.answered += 1
        path, query = self._url, b""
        if b"?" in path:
            path, query = path.split(b"?", 1)
        method = self.parser.get_method().decode("ascii")
        request = EchoRequest(
            method=method,
            path=path.decode("latin-1"),
            query=query.decode("latin-1"),
            headers=tuple(self._headers),
            body=b"".join(self._body),
            connection=self.number,
        )
        server.received.append(request)
        keep_alive = self.parser.should_keep_alive() and server.keep_alive
        response = _render(
            request,
            keep_alive=keep_alive,
            chunked=server.chunked,
            html=_under(request.path, server.html_prefix),
            set_cookies=server.set_cookies,
        )
        if server.truncate:
            # Promise the whole body, send half of it, hang up: an upstream dying mid-response.
            response = response[: len(response) - max(1, (len(response) - 200) // 2)]
            keep_alive = False
        if server.delay > 0:
            asyncio.get_running_loop().call_later(
                server.delay, self._write, transport, response, keep_alive
            )
        else:
            self._write(transport, response, keep_alive)

    def _write(self, transport: asyncio.Transport, response: bytes, keep_alive: bool) -> None:
        if transport.is_closing():
            return
        transport.write(response)
        if not keep_alive:
            transport.close()


def _under(path: str, prefix: str | None) -> bool:
    return prefix is not None and (path == prefix or path.startswith(prefix.rstrip("/") + "/"))


def _render(
    request: EchoRequest,
    *,
    keep_alive: bool,
    chunked: bool,
    html: bool = False,
    set_cookies: tuple[str, ...] = (),
) -> bytes:
    if html:
        from bastion.demo.app import render_page

        body = render_page(request.path, request.query, request.headers)
        head = [b"HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n"]
    else:
        body = orjson.dumps(request.document())
        head = [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"]
    for cookie in set_cookies:
        head.append(b"set-cookie: %s\r\n" % cookie.encode("latin-1"))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    if chunked:
        head.append(b"transfer-encoding: chunked\r\n\r\n")
        if request.method != "HEAD":
            step = 16 * 1024
            for i in range(0, len(body), step):
                piece = body[i : i + step]
                head.append(b"%x\r\n%s\r\n" % (len(piece), piece))
            head.append(b"0\r\n\r\n")
        return b"".join(head)
    head.append(b"content-length: %d\r\n\r\n" % len(body))
    if request.method != "HEAD":
        head.append(body)
    return b"".join(head)


class EchoServer:
    """A running echo server. Test knobs (plain attributes, may be changed while running):

    - ``delay``: seconds to wait before each answer (a slow upstream);
    - ``drop_after``: answer this many requests per connection, then hang up on
      the next one without a byte (a stale keep-alive connection);
    - ``chunked``: answer with ``Transfer-Encoding: chunked`` instead of a length;
    - ``keep_alive``: when False, answer ``Connection: close`` and hang up;
    - ``truncate``: send only part of each response, then hang up;
    - ``html_prefix``: answer requests under this path with the demo app's HTML page
      (:mod:`bastion.demo.app`) instead of JSON;
    - ``set_cookies``: ``Set-Cookie`` values added to every answer.
    """

    def __init__(self, *, record: int = 100) -> None:
        self.received: deque[EchoRequest] = deque(maxlen=record)
        self.connections = 0
        self.delay = 0.0
        self.drop_after: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.truncate = False
        self.html_prefix: str | None = None
        self.set_cookies: tuple[str, ...] = ()
        self.scheme = "http"
        self.host = ""
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._transports: set[asyncio.Transport] = set()

    @property
    def url(self) -> str:
        """``http(s)://host:port`` of the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def _protocol(self) -> _EchoProtocol:
        self.connections += 1
        return _EchoProtocol(self, self.connections)

    async def close(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is not None:
            self._server.close()
            for transport in list(self._transports):
                transport.close()
            await self._server.wait_closed()
            self._server = None


_KNOBS = ("delay", "drop_after", "chunked", "keep_alive", "truncate", "html_prefix", "set_cookies")


async def start_echo_server(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    record: int = 100,
    tls: ssl.SSLContext | None = None,
    **knobs: object,
) -> EchoServer:
    """Start an echo server on ``host:port`` (port 0: a free one) and return it.

    ``record`` is how many requests :attr:`EchoServer.received` keeps; ``tls``
    a server context to serve HTTPS; ``knobs`` set the test knobs of
    :class:`EchoServer`. Raises ``TypeError`` for an unknown knob.
    """
    server = EchoServer(record=record)
    for name, value in knobs.items():
        if name not in _KNOBS:
            raise TypeError(f"unknown echo server option {name!r}")
        setattr(server, name, value)
    if tls is not None:
        server.scheme = "https"
    loop = asyncio.get_running_loop()
    server._server = await loop.create_server(
        server._protocol, host, port, reuse_address=True, ssl=tls
    )
    sockname = server._server.sockets[0].getsockname()
    server.host, server.port = sockname[0], sockname[1]
    return server


def main(argv: list[str] | None = None) -> None:
    """``python -m bastion.demo.echo [--host H] [--port P]``: serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m bastion.demo.echo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = await start_echo_server(args.host, args.port)
        print(f"bastion demo echo listening on {server.url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve())


if __name__ == "__main__":
    main()
