"""Black-box gateway tests: one real ``bastion serve`` per module, its clients, raw sockets.

The gateway's behaviour is tested over real HTTP against the server users run (native
engine, the default), never by driving the pipeline in-process. What this module gives:

- :func:`serve_gateway` writes a migrated SQLite config (``routes`` YAML list items and
  any other top-level ``settings``), starts ``bastion serve`` and yields a
  :class:`GatewayServer` (``client()``, ``raw()``, ``cli()``, ``denied()``, ``counts()``).
  A server takes 1-2 s to start: make it module-scoped (:func:`gateway_fixture`), or one per
  distinct config, never one per test.
- :func:`raw_request` / :func:`request_bytes`: an exact request head and body on a socket
  (for targets and framings an HTTP client would normalise: ``//api/./%78``, two
  ``Content-Length`` fields, a chunked body sent in pieces) and the response parsed:
  status, headers in order, body, and whether the body ended as framed.
- :class:`EchoThread` (``_support``) is the usual upstream: ``server.received`` is what it
  received (headers in order, the connection each came on); :func:`fresh_echo` resets its
  knobs and record and hangs up its open connections, so a test counting connections starts
  from a clean pool. :class:`RawUpstream` answers canned bytes (or hangs up) and records
  the request heads.
- :func:`h2_request` sends one bodiless HTTP/2 request by hand (:func:`h2_frame`,
  :func:`hpack_literal`): the fields as given, in any number (CONTINUATION frames).
- :func:`plane` tells which plane answered (the native core, or the Python app for its own
  paths); Python's answers to gateway requests, from when its request path existed, are
  recorded in ``tests/vectors/twins`` (:mod:`_support.recorded`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread, free_port
from _support.native import cli_json, migrated_config
from bastion.demo.echo import EchoServer

__all__ = [
    "GatewayServer",
    "RawResponse",
    "RawUpstream",
    "audit_rows",
    "chunk",
    "dead_url",
    "fresh_echo",
    "gateway_counts",
    "gateway_fixture",
    "h2_connect",
    "h2_frame",
    "h2_frames",
    "h2_request",
    "hpack_literal",
    "plane",
    "raw_exchange",
    "raw_request",
    "request_bytes",
    "route",
    "row_parts",
    "serve_gateway",
]


def route(
    name: str, upstream: str | Sequence[str], *, path: str | None = None, **fields: Any
) -> str:
    """One route as a YAML list item for :func:`serve_gateway`: ``match.path`` is ``path``
    (default ``/NAME``), ``public: true`` unless ``fields`` say otherwise (``auth``), and
    every other field as given (values written as JSON, which YAML reads)."""
    if "auth" not in fields:
        fields.setdefault("public", True)
    items = {"match": {"path": path or f"/{name}"}, "upstream": upstream, **fields}
    lines = [f"  - name: {name}\n"]
    for key, value in items.items():
        lines.append(f"    {key}: {orjson.dumps(value, default=str).decode()}\n")
    return "".join(lines)


def dead_url(scheme: str = "http") -> str:
    """A loopback URL nothing listens on."""
    return f"{scheme}://127.0.0.1:{free_port()}"


# -- the server --------------------------------------------------------------------------


@dataclass
class GatewayServer:
    """A running ``bastion serve`` and the files of its configuration."""

    proc: BastionProcess
    config: Path

    @property
    def url(self) -> str:
        return self.proc.url

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def tls(self) -> bool:
        return self.proc.url.startswith("https")

    def client(self, *, source: str | None = None, **kw: Any) -> httpx.Client:
        """An httpx client of the server (``source``: the local address to connect from,
        any of 127.0.0.0/8 — how a test is a trusted proxy or an outsider)."""
        kw.setdefault("timeout", 10)
        transport = httpx.HTTPTransport(verify=False, local_address=source) if source else None
        return httpx.Client(base_url=self.url, verify=False, transport=transport, **kw)

    def raw(self, request: bytes | Sequence[bytes], **kw: Any) -> RawResponse:
        """:func:`raw_request` to this server."""
        return raw_request(self.port, request, tls=self.tls, **kw)

    def cli(self, *args: str) -> Any:
        """``bastion ARGS -c CONFIG --json`` (must succeed), parsed."""
        return cli_json(self.config, *args)

    def denied(self, request_ids: Iterable[str], within: float = 10.0) -> dict[str, Any]:
        """The ``gateway.denied`` audit rows of these request ids (waits for the drain)."""
        return audit_rows(self.config.parent, "gateway.denied", set(request_ids), within)

    def planes(self, native_path: str) -> tuple[str, str]:
        """(the Python app's request-id prefix, the native plane's), read from ``/healthz``
        and a gateway path the native plane serves."""
        with self.client() as client:
            python = plane(client.get("/healthz"))
            native = plane(client.get(native_path))
        assert python != native
        return python, native

    def counts(self) -> dict[tuple[str, str], float]:
        """``bastion_gateway_requests_total`` by ``(route, outcome)``, from /metrics."""
        return gateway_counts(self.url)

    def stop(self) -> None:
        self.proc.stop()


_SERIES = re.compile(rb"^bastion_gateway_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.M)


def gateway_counts(url: str) -> dict[tuple[str, str], float]:
    """``bastion_gateway_requests_total`` of the server at ``url`` by ``(route, outcome)``."""
    scrape = httpx.get(f"{url}/metrics", verify=False, timeout=10)
    assert scrape.status_code == 200
    out: dict[tuple[str, str], float] = {}
    for labels, value in _SERIES.findall(scrape.content):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels.decode()))
        out[(parsed.get("route", ""), parsed.get("outcome", ""))] = float(value)
    return out


def row_parts(row: Any) -> tuple[Any, ...]:
    """What a native audit row and its Python twin's must share (all but ids and times)."""
    return (
        row.outcome,
        row.reason,
        row.route,
        row.ip,
        row.subject,
        row.key_id,
        row.client_id,
        row.user_agent,
        row.data,
    )


def audit_rows(
    directory: Path, type_: str, request_ids: set[str] | None = None, within: float = 10.0
) -> dict[str, Any]:
    """Audit rows of ``type_`` in ``directory/bastion.db`` by request id (rows without one
    under their sequence number); with ``request_ids``, waits until all are there."""
    from bastion.storage import Database

    async def rows() -> list[Any]:
        db = await Database.connect(f"sqlite:///{directory}/bastion.db")
        try:
            page = await db.audit.search(type=type_, limit=1000)
            return list(page.items)
        finally:
            await db.close()

    deadline = time.monotonic() + within
    while True:
        found = {row.request_id or str(row.seq): row for row in asyncio.run(rows())}
        if request_ids is None:
            return found
        found = {rid: row for rid, row in found.items() if rid in request_ids}
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@contextlib.contextmanager
def serve_gateway(
    directory: Path, routes: str, settings: str = "", env: Mapping[str, str] | None = None
) -> Iterator[GatewayServer]:
    """``bastion serve`` of ``routes`` (YAML list items, indented two spaces) with the other
    top-level ``settings`` (YAML), on a migrated SQLite database in ``directory``."""
    config = migrated_config(directory, routes)
    if settings:
        config.write_text(settings.rstrip("\n") + "\n" + config.read_text())
    with BastionProcess("-c", str(config), cwd=directory, env=env) as proc:
        yield GatewayServer(proc, config)


def gateway_fixture(
    routes: str | Callable[[pytest.FixtureRequest], str],
    settings: str = "",
    *,
    scope: Any = "module",
) -> Any:
    """A fixture (module-scoped by default) yielding one :class:`GatewayServer`.

    ``routes`` may name ``{echo}``: the URL of the ``echo_upstream`` fixture (a module's
    :class:`EchoThread`, defined by the module or its conftest); or be a function of the
    fixture request, to read other fixtures (other upstreams, certificates)."""

    @pytest.fixture(scope=scope)
    def served(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GatewayServer]:
        text = routes(request) if callable(routes) else routes
        if "{echo}" in text:
            echo: EchoThread = request.getfixturevalue("echo_upstream")
            text = text.replace("{echo}", echo.server.url)
        with serve_gateway(tmp_path_factory.mktemp("gateway"), text, settings) as server:
            yield server

    return served


def fresh_echo(echo: EchoThread) -> EchoServer:
    """``echo``'s server with its knobs reset, its record emptied, its connection count at 0
    and every open connection hung up (so no pooled connection of an earlier test is used:
    the gateway drops a pooled connection the upstream closed before handing it out)."""
    server = echo.server

    async def reset() -> None:
        for transport in list(server._transports):
            transport.close()
        for _ in range(100):  # until every socket is closed (connection_lost ran)
            if not server._transports:
                break
            await asyncio.sleep(0.01)

    asyncio.run_coroutine_threadsafe(reset(), echo.loop).result(10)
    server.delay, server.drop_after, server.chunked = 0.0, None, False
    server.keep_alive, server.truncate = True, False
    server.received.clear()
    server.connections = 0
    time.sleep(0.02)  # the FINs are on the gateway's sockets
    return server


def plane(response: httpx.Response | RawResponse) -> str:
    """The request id's prefix: one per plane of a process (Python's, the native front's)."""
    if isinstance(response, RawResponse):
        return response.request_id.rsplit("-", 1)[0]
    return response.headers["x-request-id"].rsplit("-", 1)[0]


# -- raw sockets -------------------------------------------------------------------------


def request_bytes(
    method: str,
    target: str,
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    host: str | None = "gw.test",
    length: bool = True,
) -> bytes:
    """An HTTP/1.1 request, byte for byte: ``Host`` first (unless None), ``headers`` in
    order, and ``Content-Length`` of ``body`` when there is one (unless ``length`` is
    False or ``headers`` frame it already)."""
    fields = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    names = {name.lower() for name, _ in fields}
    if body and length and not names & {"content-length", "transfer-encoding"}:
        fields.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (``b""``: the last one)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass
class RawResponse:
    """A response as it came off the wire."""

    status: int
    headers: list[tuple[str, str]]  # in order, names lower-cased
    body: bytes  # decoded from its framing
    head: bytes  # the head as sent, without the blank line
    complete: bool  # the body ended as framed (False: the connection closed first)
    closed: bool = False  # the server closed the connection after it
    extra: bytes = field(default=b"", repr=False)  # bytes after the response

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (repeats joined with ", "), or None."""
        values = [v for n, v in self.headers if n == name.lower()]
        return ", ".join(values) if values else None

    def names(self) -> list[str]:
        return [name for name, _ in self.headers]

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def request_id(self) -> str:
        """The request id (the header's, else the problem document's)."""
        rid = self.header("x-request-id")
        if rid is None:
            found = re.search(rb'"request_id":"([^"]+)"', self.body)
            rid = found.group(1).decode() if found else ""
        return rid


def _connect(port: int, tls: bool, source: str | None, timeout: float) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    )
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="localhost")
    return sock


class _Reader:
    def __init__(self, sock: socket.socket, read_delay: float) -> None:
        self.sock, self.buf, self.eof, self.read_delay = sock, b"", False, read_delay

    def more(self) -> bool:
        if self.eof:
            return False
        if self.read_delay:
            time.sleep(self.read_delay)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, TimeoutError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def until(self, marker: bytes) -> int:
        while (at := self.buf.find(marker)) < 0:
            if not self.more():
                return -1
        return at

    def take(self, size: int) -> bytes:
        while len(self.buf) < size and self.more():
            pass
        out, self.buf = self.buf[:size], self.buf[size:]
        return out


def _read_response(reader: _Reader, method: str) -> RawResponse | None:
    while True:
        end = reader.until(b"\r\n\r\n")
        if end < 0:
            return None
        head, reader.buf = reader.buf[:end], reader.buf[end + 4 :]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        if 100 <= status < 200 and status != 101:
            continue  # interim answers (100 Continue) precede the response
        break
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    values = dict(headers)
    body, complete = b"", True
    if method == "HEAD" or status in (101, 204, 304):
        pass
    elif values.get("transfer-encoding", "").lower() == "chunked":
        complete = False
        while (at := reader.until(b"\r\n")) >= 0:
            size = int(reader.buf[:at].split(b";")[0], 16)
            reader.buf = reader.buf[at + 2 :]
            if size == 0:
                complete = reader.until(b"\r\n") >= 0  # (no trailers from bastion)
                reader.buf = reader.buf[2:]
                break
            data = reader.take(size + 2)
            body += data[:size]
            if len(data) < size + 2:
                break
    elif "content-length" in values:
        size = int(values["content-length"])
        body = reader.take(size)
        complete = len(body) == size
    else:
        while reader.more():
            pass
        body, reader.buf = reader.buf, b""
    return RawResponse(status, headers, body, head, complete)


def raw_request(
    port: int,
    request: bytes | Sequence[bytes],
    *,
    tls: bool = False,
    pause: float = 0.0,
    half_close: bool = False,
    source: str | None = None,
    read_delay: float = 0.0,
    responses: int = 1,
    timeout: float = 10.0,
) -> RawResponse:
    """Send ``request`` on a new connection — a list is sent piece by piece, ``pause``
    seconds apart; ``half_close`` then shuts the sending side — and read the response
    (``responses`` > 1: the last of several, for requests sent back to back on one
    connection). ``read_delay`` sleeps before each read: a slow client."""
    answers = raw_exchange(
        port,
        request,
        tls=tls,
        pause=pause,
        half_close=half_close,
        source=source,
        read_delay=read_delay,
        responses=responses,
        timeout=timeout,
    )
    assert answers, "the server closed the connection without answering"
    return answers[-1]


def raw_exchange(
    port: int,
    request: bytes | Sequence[bytes],
    *,
    tls: bool = False,
    pause: float = 0.0,
    half_close: bool = False,
    source: str | None = None,
    read_delay: float = 0.0,
    responses: int = 1,
    timeout: float = 10.0,
) -> list[RawResponse]:
    """Like :func:`raw_request`; every response read (fewer if the server closed first)."""
    pieces = [request] if isinstance(request, bytes) else list(request)
    methods = []
    for piece in pieces:
        methods += re.findall(rb"(?:^|\r\n\r\n)([A-Z]+) \S+ HTTP/1\.[01]\r\n", piece)
    with _connect(port, tls, source, timeout) as sock:
        for i, piece in enumerate(pieces):
            if i and pause:
                time.sleep(pause)
            with contextlib.suppress(OSError):
                sock.sendall(piece)
        if half_close:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        reader = _Reader(sock, read_delay)
        out: list[RawResponse] = []
        for i in range(responses):
            method = methods[i].decode() if i < len(methods) else "GET"
            answer = _read_response(reader, method)
            if answer is None:
                break
            out.append(answer)
        if out:
            out[-1].extra = reader.buf
            out[-1].closed = reader.eof
    return out


# -- upstreams ----------------------------------------------------------------------------


class RawUpstream:
    """A loopback upstream that reads one request head per connection, records its request
    line, then writes ``answer`` (None: hangs up without a byte) and closes ``linger``
    seconds later."""

    def __init__(self, answer: bytes | None, linger: float = 0.5) -> None:
        self.answer, self.linger = answer, linger
        self.requests: list[bytes] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            head = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in head and (data := conn.recv(65536)):
                    head += data
            if not head:
                return
            self.requests.append(head.split(b"\r\n", 1)[0])
            if self.answer is None:
                return
            with contextlib.suppress(OSError):
                conn.sendall(self.answer)
                time.sleep(self.linger)

    def close(self) -> None:
        self._sock.close()


# -- HTTP/2 by hand ----------------------------------------------------------------------

#: SETTINGS_MAX_FRAME_SIZE's initial value (RFC 9113 §6.5.2): the largest frame sent.
_H2_FRAME = 16384


def h2_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    """One HTTP/2 frame (RFC 9113 §4.1)."""
    return (
        len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    )


def _hpack_string(data: bytes) -> bytes:
    """An HPACK string literal without Huffman coding (RFC 7541 §5.2): its length as an
    integer of a 7-bit prefix (§5.1), then its bytes."""
    size, out = len(data), bytearray()
    if size < 127:
        out.append(size)
    else:
        out.append(127)
        size -= 127
        while size >= 128:
            out.append(size % 128 + 128)
            size //= 128
        out.append(size)
    return bytes(out) + data


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """One HPACK field, literal without indexing, new name (RFC 7541 §6.2.2)."""
    return b"\x00" + _hpack_string(name) + _hpack_string(value)


def h2_connect(port: int) -> ssl.SSLSocket:
    """A TLS connection to the server on ``port`` that negotiated ``h2`` (ALPN)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    raw_sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock = context.wrap_socket(raw_sock, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    return sock


def h2_frames(sock: socket.socket, timeout: float = 10.0) -> Iterator[tuple[int, int, int, bytes]]:
    """The frames ``sock`` receives, as ``(type, flags, stream, payload)`` (RFC 9113 §4.1),
    for ``timeout`` seconds at most. Raises AssertionError when the connection closes."""
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = sock.recv(65536)
            assert chunk, "the connection closed"
            buf += chunk
        size = int.from_bytes(buf[:3], "big")
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        yield buf[3], buf[4], stream, buf[9 : 9 + size]
        buf = buf[9 + size :]


def h2_request(server: GatewayServer, fields: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A bodiless request over HTTP/2 (TLS, ALPN ``h2``) with exactly these fields,
    pseudo-headers included (curl turns a ``Host`` field into ``:authority``); a header
    block past one frame goes on in CONTINUATION frames. The response body (its head's
    HPACK is not decoded: a bare answer is ``b""``). Raises AssertionError for a reset
    stream or a closed connection."""
    sock = h2_connect(server.port)
    block = b"".join(hpack_literal(name, value) for name, value in fields)
    parts = [block[i : i + _H2_FRAME] for i in range(0, len(block), _H2_FRAME)] or [b""]
    body = b""
    with sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b""))
        for index, part in enumerate(parts):
            last = 0x4 if index == len(parts) - 1 else 0  # END_HEADERS
            if index == 0:
                sock.sendall(h2_frame(1, 0x1 | last, 1, part))  # HEADERS, END_STREAM
            else:
                sock.sendall(h2_frame(9, last, 1, part))  # CONTINUATION
        for kind, flags, stream, payload in h2_frames(sock):
            if kind == 4 and not flags & 1:
                sock.sendall(h2_frame(4, 1, 0, b""))  # SETTINGS ACK
            elif kind == 1 and stream == 1 and flags & 1:
                return body  # a head that ends the stream: no body
            elif kind == 0 and stream == 1:
                body += payload
                if flags & 1:
                    return body
            elif kind in (3, 7):
                raise AssertionError(f"stream reset or connection closed: {payload!r}")
    raise AssertionError("no answer")
