"""The upstream HTTP/1.1 client: pooled keep-alive connections at the parser level.

Why not httpx or aiohttp: on this project's machines an httpx proxy does ~350
requests/s and an aiohttp one ~5,200, while an ``asyncio.Protocol`` fed to
``httptools`` does ~17,500 (DESIGN.md, "Performance design"). So this module
speaks HTTP/1.1 itself:

- :class:`UpstreamClient` keeps one :class:`_Pool` per upstream
  ``(scheme, host, port)``: at most ``pool_size`` idle keep-alive connections,
  closed after ``idle_timeout`` seconds unused. A connection goes back to the
  pool only after its response was read completely and neither side asked
  for ``Connection: close``; anything else closes it.
- The request body is streamed from ASGI ``receive`` to the upstream
  (``Content-Length`` when known, else chunked); the response body is streamed
  to ASGI ``send`` as it arrives. Back-pressure: when more than
  :data:`HIGH_WATER` bytes are waiting for a slow client, the upstream socket
  stops being read.
- Timeouts: ``connect_timeout`` per connection attempt, ``read_timeout`` per
  wait for the next bytes, and the route's ``timeout`` for the whole
  exchange. Before the response started they raise
  :class:`UpstreamTimeoutError` (504); after, :class:`UpstreamAbortedError`
  (the server aborts the client connection, so a truncated body is never
  passed off as complete).
- A pooled connection the upstream closed before sending any response byte is
  *stale*: an idempotent request whose body is fully in hand is retried once
  on a fresh connection. Anything else gets :class:`UpstreamUnavailableError`.
- Hop-by-hop headers (RFC 9110 §7.6.1) are removed in both directions, with
  every header named in ``Connection``. ``X-Forwarded-For/-Proto/-Host`` are
  set by bastion; client values are kept only from trusted proxies.
- https upstreams are verified with ``ssl.create_default_context()`` (or the
  route's own context: private CA, client certificate); SNI and the checked
  name are the upstream's host. A failed handshake is :class:`UpstreamTLSError`.
- A route with several targets (:class:`~bastion.gateway.upstreams.Targets`)
  picks one round-robin among the healthy ones; a failed *connection* counts
  against the target's health and — for GET, HEAD, OPTIONS, PUT and DELETE
  only, since nothing was sent yet — is retried once on each other target.
  POST and PATCH are never retried. Every target ejected:
  :class:`NoHealthyUpstreamError` (503) without connecting.
- Every failure is an :class:`~bastion.gateway.errors.UpstreamFailureError`
  naming its ``cause`` (refused, dns, unreachable, timeout, tls, reset, closed,
  invalid_response), the ``target`` and the system's own words (``note``),
  which the proxy step logs in one line (:class:`~bastion.gateway.upstreams.FailureLog`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httptools

from bastion.gateway.errors import (
    BadRequestError,
    NoHealthyUpstreamError,
    RequestTooLargeError,
    UpstreamAbortedError,
    UpstreamTimeoutError,
    UpstreamTLSError,
    UpstreamUnavailableError,
)
from bastion.gateway.forwarded import ProxyEntry, TrustedProxies
from bastion.gateway.headers import HOP_BY_HOP_HEADERS, PROXY_OWNED_REQUEST_HEADERS
from bastion.gateway.matcher import Upstream
from bastion.gateway.upstreams import FailureLog, HealthBook, Targets

__all__ = [
    "HIGH_WATER",
    "ClientDisconnectedError",
    "PreparedRequest",
    "ProxyEntry",
    "ResponseEdit",
    "TrustedProxies",
    "UpstreamClient",
    "apply_edits",
    "prepare_request",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Header = tuple[bytes, bytes]
ResponseEdit = tuple[Callable[[bytes], bool], Sequence[Header]]
"""A change to the upstream's response headers: drop the (lower-case) names the
predicate accepts, then add the headers. Steps record them (rate-limit state, CORS);
the proxy applies them where it builds the response head, with no wrapper around
``send``."""

HIGH_WATER = 256 * 1024
"""Buffered response bytes above which the upstream socket is no longer read."""

WATCHDOG_TICK = 0.05
"""Seconds between two checks of the exchanges' timeouts (how late one may fire)."""

MAX_RESPONSE_HEAD_BYTES = 64 * 1024
"""An upstream response head larger than this is refused (502)."""

# Never forwarded, whoever sends them (issue 13): path overrides — an upstream framework
# honouring them would serve another path than the one bastion matched and authorised —
# and identity claims of auth proxies (oauth2-proxy and the like): identity reaches the
# upstream only as bastion's own X-Bastion-* headers.
ALWAYS_STRIPPED_REQUEST_HEADERS = frozenset(
    {
        b"x-original-url",
        b"x-original-uri",
        b"x-rewrite-url",
        b"x-override-url",
        b"x-forwarded-email",
        b"x-forwarded-groups",
        b"x-forwarded-preferred-username",
        b"x-forwarded-access-token",
        b"x-auth-request-email",
        b"x-auth-request-groups",
        b"x-auth-request-preferred-username",
        b"x-auth-request-access-token",
    }
)
# Forwarded only from a trusted proxy (besides every X-Forwarded-*): client-address and
# proxy-identity claims a client could otherwise forge.
UNTRUSTED_STRIPPED_REQUEST_HEADERS = frozenset(
    {
        b"true-client-ip",
        b"x-client-ip",
        b"client-ip",
        b"cf-connecting-ip",
        b"cf-connecting-ipv6",
        b"fastly-client-ip",
        b"x-cluster-client-ip",
        b"x-originating-ip",
        b"x-remote-ip",
        b"x-remote-addr",
        b"x-proxyuser-ip",
        b"x-host",
        b"x-http-host-override",
    }
)
_FORWARDED_PREFIX = b"x-forwarded-"
_STRIPPED_FROM_UNTRUSTED = ALWAYS_STRIPPED_REQUEST_HEADERS | UNTRUSTED_STRIPPED_REQUEST_HEADERS
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Methods retried on another target when the connection could not be established.
_RETRY_ON_CONNECT_FAILURE = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Methods whose empty body is still announced with "content-length: 0" (RFC 9110 §8.6).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DIGITS = frozenset(b"0123456789")
_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close"})


class ClientDisconnectedError(Exception):
    """The client went away before its request body was read; nothing is left to answer."""


class _UpstreamClosedError(Exception):
    """Internal: the upstream connection was lost while the request was being written."""


@dataclass(slots=True)
class PreparedRequest:
    """The forwardable parts of a client request (framing checked, headers filtered)."""

    header_block: bytes  # "name: value\r\n" lines, without host and body framing
    content_length: int | None  # as declared by the client, None if not declared


def _connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    return frozenset(
        token.strip().lower() for value in values for token in value.split(b",") if token.strip()
    )


def prepare_request(
    scope: Scope, *, trusted: bool, drop: frozenset[bytes] = frozenset()
) -> PreparedRequest:
    """Check the request's body framing and build the header block to forward.

    ``trusted`` says whether the direct peer is a trusted proxy: only then are
    client-sent ``X-Forwarded-*`` values kept (the peer is appended to
    ``X-Forwarded-For``) and the headers of :data:`UNTRUSTED_STRIPPED_REQUEST_HEADERS`
    forwarded; otherwise every ``X-Forwarded-*`` and those headers are dropped and
    bastion sets ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` itself. The headers of
    :data:`ALWAYS_STRIPPED_REQUEST_HEADERS` are never forwarded. Names are compared
    with ``_`` read as ``-`` (``X_Original_URL`` is ``X-Original-URL`` to CGI and WSGI),
    and an ``_`` spelling of a header bastion sets itself is dropped. Headers whose
    lower-cased name is in ``drop`` are not forwarded (the credential bastion consumed).

    Raises :class:`BadRequestError` for both ``Content-Length`` and
    ``Transfer-Encoding``, a malformed or repeated ``Content-Length``, or a
    transfer coding other than ``chunked``.
    """
    headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
    connection: list[bytes] = []
    content_lengths: list[bytes] = []
    transfer_encoding: list[bytes] = []
    xff: list[bytes] = []
    xfp = xfh = None
    host = b""
    kept: list[tuple[bytes, bytes]] = []
    stripped = ALWAYS_STRIPPED_REQUEST_HEADERS if trusted else _STRIPPED_FROM_UNTRUSTED
    for raw_name, value in headers:
        name = raw_name.lower()
        if b"_" in name:
            folded = name.replace(b"_", b"-")
            if (
                folded in PROXY_OWNED_REQUEST_HEADERS
                or folded in HOP_BY_HOP_HEADERS
                or folded.startswith(b"proxy-")
                or _spoofable(folded, trusted)
            ):
                continue
        elif name in stripped or (
            not trusted
            and name.startswith(_FORWARDED_PREFIX)
            and name not in PROXY_OWNED_REQUEST_HEADERS
        ):
            continue
        if name in PROXY_OWNED_REQUEST_HEADERS:
            if name == b"host":
                host = value
            elif name == b"content-length":
                content_lengths.append(value)
            elif name == b"x-forwarded-for":
                xff.append(value)
            elif name == b"x-forwarded-proto":
                xfp = value
            elif name == b"x-forwarded-host":
                xfh = value
            continue
        if name in HOP_BY_HOP_HEADERS:
            if name == b"connection":
                connection.append(value)
            elif name == b"transfer-encoding":
                transfer_encoding.append(value)
            continue
        if name.startswith(b"proxy-") or name in drop:
            continue
        kept.append((name, value))

    content_length: int | None = None
    if transfer_encoding:
        if content_lengths:
            raise BadRequestError(
                "The request has both Content-Length and Transfer-Encoding; send only one."
            )
        codings = [c.strip().lower() for v in transfer_encoding for c in v.split(b",")]
        if codings != [b"chunked"]:
            raise BadRequestError("Transfer-Encoding must be exactly 'chunked'.")
    elif content_lengths:
        raw = content_lengths[0].strip()
        if len(content_lengths) > 1 or not raw or len(raw) > 18 or not set(raw) <= _DIGITS:
            raise BadRequestError("The request's Content-Length header is malformed.")
        content_length = int(raw)

    named = _connection_tokens(connection) if connection else frozenset()
    lines = [
        name + b": " + value + b"\r\n" for name, value in kept if not named or name not in named
    ]

    client = scope.get("client")
    peer = client[0].encode("ascii", "replace") if client else None
    if trusted and xff and peer is not None:
        lines.append(b"x-forwarded-for: " + b", ".join(xff) + b", " + peer + b"\r\n")
    elif peer is not None:
        lines.append(b"x-forwarded-for: " + peer + b"\r\n")
    proto = xfp if trusted and xfp else scope.get("scheme", "http").encode("ascii")
    lines.append(b"x-forwarded-proto: " + proto + b"\r\n")
    forwarded_host = xfh if trusted and xfh else host
    if forwarded_host:
        lines.append(b"x-forwarded-host: " + forwarded_host + b"\r\n")
    return PreparedRequest(header_block=b"".join(lines), content_length=content_length)


def _spoofable(name: bytes, trusted: bool) -> bool:
    """Whether the (lower-cased, ``-`` folded) request header ``name`` is never forwarded."""
    if name in ALWAYS_STRIPPED_REQUEST_HEADERS:
        return True
    if trusted:
        return False
    return (
        name.startswith(_FORWARDED_PREFIX) and name not in PROXY_OWNED_REQUEST_HEADERS
    ) or name in UNTRUSTED_STRIPPED_REQUEST_HEADERS


def _response_headers(
    raw: list[tuple[bytes, bytes]], edits: Sequence[ResponseEdit] = ()
) -> list[tuple[bytes, bytes]]:
    """Lower-case the upstream's header names, drop hop-by-hop ones, then apply ``edits``."""
    named: frozenset[bytes] = frozenset()
    out: list[tuple[bytes, bytes]] = []
    for raw_name, value in raw:
        name = raw_name.lower()
        if name == b"connection":
            # "keep-alive" and "close" (nearly every response) name no header to drop.
            if value.lower() not in _PLAIN_CONNECTION:
                named = named | _connection_tokens([value])
            continue
        if name in HOP_BY_HOP_HEADERS or name.startswith(b"proxy-"):
            continue
        out.append((name, value))
    if named:
        out = [(n, v) for n, v in out if n not in named]
    return apply_edits(out, edits) if edits else out


def apply_edits(headers: list[Header], edits: Sequence[ResponseEdit]) -> list[Header]:
    """``headers`` (lower-case names) changed by ``edits`` in order (see :data:`ResponseEdit`)."""
    for drop, add in edits:
        headers = [h for h in headers if not drop(h[0])]
        headers.extend(add)
    return headers


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One upstream connection: parses responses with httptools, buffers body chunks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.closed = False
        self.broken = False  # must not be reused (protocol error, unexpected data)
        self.idle_since = 0.0
        self._reset(head=False)
        self.waiter: asyncio.Future[None] | None = None
        self.wait_until = 0.0  # loop time at which the current wait times out
        self.drain_waiter: asyncio.Future[None] | None = None
        self.write_paused = False
        self.read_paused = False
        self.lost: Exception | None = None  # why the connection was lost, when known

    def _reset(self, *, head: bool) -> None:
        self.head = head
        self.received_any = False
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.headers_done = False
        self.until_eof = False
        self.complete = False
        self.keep_alive = False
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.failed = False
        self.invalid = False  # the response is not valid HTTP/1.1

    # -- used by the proxy --------------------------------------------------

    def begin(self, *, head: bool) -> None:
        """Prepare to read the response to a new request (``head``: it is a HEAD request)."""
        self._reset(head=head)
        self.parser = httptools.HttpResponseParser(self)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the socket accepts more data; raises _UpstreamClosedError if lost."""
        if self.closed:
            raise _UpstreamClosedError
        if self.write_paused:
            fut = self.loop.create_future()
            self.drain_waiter = fut
            try:
                await fut
            finally:
                self.drain_waiter = None
            if self.closed:
                raise _UpstreamClosedError

    async def wait(self, idle: float) -> None:
        """Wait until something happens on the connection; raises TimeoutError after ``idle`` s.

        No timer per wait: the client's watchdog fails the waiter once ``wait_until``
        has passed (see :meth:`UpstreamClient._watch`).
        """
        fut = self.loop.create_future()
        self.waiter = fut
        self.wait_until = self.loop.time() + idle
        try:
            await fut
        finally:
            self.waiter = None

    def take(self) -> bytes:
        """Remove and return the buffered body bytes; resumes reading if it was paused."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self.buffered = 0
        if self.read_paused and self.transport is not None and not self.closed:
            self.read_paused = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self.broken

    def close(self) -> None:
        self.broken = True
        if self.transport is not None and not self.closed:
            self.transport.close()

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports do not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None or self.complete:
            # Bytes nobody asked for (an idle connection, or after a complete response).
            self.broken = True
            self.close()
            return
        self.received_any = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            self.failed = True
            self.invalid = True
            self.close()
        self._wake()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.lost = exc
        if not self.complete:
            if self.headers_done and self.until_eof:
                self.complete = True  # a body delimited by the end of the connection
            else:
                self.failed = True
        self.keep_alive = False
        self._wake()
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self.drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self.raw_headers = []
        self.head_bytes = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value)
        if self.head_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise ValueError("upstream response head too large")
        self.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # informational (e.g. 100 Continue): the final response follows
        self.status = status
        self.headers_done = True
        if self.head:
            # A HEAD response has no body whatever its headers say; the parser is
            # replaced for the next request, so it never reads the "missing" body.
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()
            return
        if status not in (204, 304):
            framed = False
            for name, _ in self.raw_headers:
                lowered = name.lower()
                if lowered in (b"content-length", b"transfer-encoding"):
                    framed = True
                    break
            self.until_eof = not framed

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if not self.headers_done or self.complete:
            return
        assert self.parser is not None
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()


class _Pool:
    """Idle keep-alive connections to one upstream (LIFO, bounded, expiring)."""

    def __init__(self, client: UpstreamClient, upstream: Upstream) -> None:
        self.client = client
        self.upstream = upstream
        self.idle: deque[_Connection] = deque()
        self.sweep: asyncio.TimerHandle | None = None
        self.opened = 0  # connections opened (for stats and tests)

    def take_idle(self, now: float) -> _Connection | None:
        idle = self.idle
        limit = self.client.idle_timeout
        while idle:
            conn = idle.pop()
            if conn.closed or conn.broken or now - conn.idle_since >= limit:
                conn.close()
                continue
            return conn
        return None

    async def connect(self, limit: float) -> _Connection:
        """Open a new connection; raises UpstreamTimeoutError / UpstreamUnavailableError."""
        loop = asyncio.get_running_loop()
        up = self.upstream
        tls = (up.ssl_context or self.client.ssl_context) if up.scheme == "https" else None
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    up.host,
                    up.port,
                    ssl=tls,
                    server_hostname=up.host if tls is not None else None,
                )
        except TimeoutError:
            raise UpstreamTimeoutError(
                "Connecting to the upstream timed out.",
                cause="timeout",
                target=_describe(up),
                note=f"no connection within {limit:g} s",
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamTLSError(
                "The TLS handshake with the upstream failed: its certificate was not "
                f"accepted ({exc.verify_message}).",
                cause="tls",
                target=_describe(up),
                note=str(exc.verify_message or exc.reason or exc),
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamTLSError(
                "The TLS handshake with the upstream failed.",
                cause="tls",
                target=_describe(up),
                note=str(exc.reason or exc),
            ) from None
        except OSError as exc:
            # The cause stays on the error (and in the log line), not in a traceback.
            raise UpstreamUnavailableError(
                "The upstream could not be reached.",
                cause=_connect_cause(exc),
                target=_describe(up),
                note=exc.strerror or str(exc) or type(exc).__name__,
            ) from None
        self.opened += 1
        return conn

    def release(self, conn: _Connection) -> None:
        if self.client.closing or len(self.idle) >= self.client.pool_size:
            conn.close()
            return
        loop = conn.loop
        conn.parser = None
        conn.idle_since = loop.time()
        self.idle.append(conn)
        if self.sweep is None:
            self.sweep = loop.call_later(self.client.idle_timeout, self._sweep)

    def _sweep(self) -> None:
        self.sweep = None
        if not self.idle:
            return
        loop = self.idle[0].loop
        now = loop.time()
        limit = self.client.idle_timeout
        keep: deque[_Connection] = deque()
        for conn in self.idle:
            if conn.closed or conn.broken or now - conn.idle_since >= limit:
                conn.close()
            else:
                keep.append(conn)
        self.idle = keep
        if keep:
            self.sweep = loop.call_later(limit / 2, self._sweep)

    def close(self) -> None:
        if self.sweep is not None:
            self.sweep.cancel()
            self.sweep = None
        while self.idle:
            self.idle.pop().close()


def _describe(upstream: Upstream) -> str:
    """``upstream`` as ``scheme://host:port`` (for log lines; never sent to clients)."""
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    return f"{upstream.scheme}://{host}:{upstream.port}"


def _connect_cause(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "reset"
    return "unreachable"


def _lost_cause(conn: _Connection) -> tuple[str, str]:
    """Why ``conn`` ended without a complete response: (cause, note)."""
    if conn.invalid:
        return "invalid_response", "the response is not valid HTTP/1.1"
    lost = conn.lost
    if isinstance(lost, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "reset", lost.strerror or str(lost) or type(lost).__name__
    if isinstance(lost, OSError):
        return "unreachable", lost.strerror or str(lost) or type(lost).__name__
    return "closed", "the upstream closed the connection"


class UpstreamClient:
    """Pools of keep-alive HTTP/1.1 connections to upstreams, and the forwarding logic.

    ``pool_size`` bounds the idle connections kept per upstream (extra ones are
    closed after use); ``max_body_size`` bounds request bodies (413 beyond).
    """

    def __init__(
        self,
        *,
        pool_size: int = 64,
        idle_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_body_size: int = 64 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool_size = pool_size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_body_size = max_body_size
        self._ssl_context = ssl_context
        self.pools: dict[tuple[str, str, int, str], _Pool] = {}
        self.closing = False
        # Exchanges in flight, checked by the watchdog every WATCHDOG_TICK seconds.
        self._inflight: set[_Exchange] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._watchdog_loop: asyncio.AbstractEventLoop | None = None
        # Passive health of every target, by address (shared by routes, kept across reloads).
        self.health = HealthBook()
        # One log line per failing target and cause per interval (the proxy step writes it).
        self.failures = FailureLog()

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context for https upstreams: verified, system trust store unless given."""
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    def pool(self, upstream: Upstream) -> _Pool:
        """The connection pool of ``upstream`` (created on first use)."""
        pool = self.pools.get(upstream.key)
        if pool is None:
            pool = self.pools[upstream.key] = _Pool(self, upstream)
        return pool

    def connections_opened(self, upstream: Upstream) -> int:
        """How many connections were opened to ``upstream`` so far."""
        pool = self.pools.get(upstream.key)
        return pool.opened if pool is not None else 0

    async def close(self) -> None:
        """Close every idle connection; connections in use close when their exchange ends."""
        self.closing = True
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()

    async def forward(
        self,
        upstream: Upstream,
        method: str,
        target: bytes,
        request: PreparedRequest,
        receive: Receive,
        send: Send,
        *,
        time_limit: float,
        targets: Targets | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        response_edits: Sequence[ResponseEdit] = (),
    ) -> None:
        """Send the request to ``upstream`` and stream its response to ``send``.

        ``time_limit`` is the route's total timeout for the whole exchange;
        ``connect_timeout`` / ``read_timeout`` override the client's defaults.
        With ``targets`` the upstream is chosen among them (``upstream`` is
        ignored), with health checks and connect-failure retries.
        ``target`` is the path (already normalised, prefixed) plus ``?query``.
        ``response_edits`` change the response's headers (see :data:`ResponseEdit`).
        Raises, before any response byte was sent: :class:`UpstreamUnavailableError`,
        :class:`UpstreamTimeoutError`, :class:`RequestTooLargeError`,
        :class:`BadRequestError`, :class:`ClientDisconnectedError`. After the
        response started: :class:`UpstreamAbortedError` (abort the connection).
        """
        pool = self.pool(upstream)
        call = _Exchange(self, pool, method, target, request, receive, send, time_limit)
        call.targets = targets
        call.edits = response_edits
        if connect_timeout is not None:
            call.connect_timeout = connect_timeout
        if read_timeout is not None:
            call.read_timeout = read_timeout
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        call.task = task
        call.deadline = loop.time() + time_limit
        cancelling = task.cancelling()
        inflight = self._inflight
        inflight.add(call)
        if self._watchdog is None or self._watchdog_loop is not loop:
            self._watchdog_loop = loop
            self._watchdog = loop.call_later(WATCHDOG_TICK, self._watch, loop)
        try:
            await call.run()
        except asyncio.CancelledError:
            call.discard()
            # The watchdog's cancel (the total time limit) becomes a timeout; anyone
            # else's cancellation goes on as one.
            if not call.expired or task.uncancel() > cancelling:
                raise
            self._timed_out(call)
        except TimeoutError:
            call.discard()
            self._timed_out(call)
        except BaseException:
            call.discard()
            raise
        finally:
            inflight.discard(call)

    @staticmethod
    def _timed_out(call: _Exchange) -> None:
        target = _describe(call.pool.upstream)
        if call.expired:
            note = f"the route's timeout ({call.timeout:g} s) passed"
        else:
            note = f"no bytes for read_timeout ({min(call.read_timeout, call.timeout):g} s)"
        if call.started:
            raise UpstreamAbortedError(
                "The upstream timed out mid-response.", cause="timeout", target=target, note=note
            ) from None
        raise UpstreamTimeoutError(
            "The upstream did not answer in time.", cause="timeout", target=target, note=note
        ) from None

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timeouts of every exchange in flight, checked on one periodic timer.

        Why not ``asyncio.timeout`` and a timer per wait: together they cost about 7 µs
        per request, more than a tenth of the proxy's own time (bench/gateway). A
        timeout fires up to :data:`WATCHDOG_TICK` late, which is far below the
        timeouts' granularity (seconds).
        """
        self._watchdog = None
        if not self._inflight:
            return
        now = loop.time()
        for call in self._inflight:
            if call.expired:
                continue
            if now >= call.deadline:
                call.expired = True
                if call.task is not None:
                    call.task.cancel()
                continue
            conn = call.conn
            if conn is not None and conn.waiter is not None and now >= conn.wait_until:
                _expire(conn.waiter)
        self._watchdog = loop.call_later(WATCHDOG_TICK, self._watch, loop)


class _Exchange:
    """One request/response exchange with an upstream (state for error handling)."""

    __slots__ = (
        "client",
        "conn",
        "connect_timeout",
        "deadline",
        "edits",
        "expired",
        "method",
        "pool",
        "read_timeout",
        "receive",
        "request",
        "send",
        "started",
        "target",
        "targets",
        "task",
        "timeout",
    )

    def __init__(
        self,
        client: UpstreamClient,
        pool: _Pool,
        method: str,
        target: bytes,
        request: PreparedRequest,
        receive: Receive,
        send: Send,
        timeout: float,
    ) -> None:
        self.client = client
        self.pool = pool
        self.method = method
        self.target = target
        self.request = request
        self.receive = receive
        self.send = send
        self.timeout = timeout
        self.conn: _Connection | None = None
        self.started = False
        self.targets: Targets | None = None
        self.edits: Sequence[ResponseEdit] = ()
        self.task: asyncio.Task[Any] | None = None
        self.deadline = 0.0  # loop time at which the whole exchange times out
        self.expired = False  # the watchdog cancelled it at the deadline
        self.connect_timeout = client.connect_timeout
        self.read_timeout = client.read_timeout

    def discard(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def _receive_chunk(self) -> tuple[bytes, bool]:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        return message.get("body", b""), bool(message.get("more_body", False))

    async def run(self) -> None:
        client = self.client
        request = self.request
        method = self.method
        declared = request.content_length
        if declared is not None and declared > client.max_body_size:
            raise RequestTooLargeError(
                f"The request body is larger than {client.max_body_size} bytes."
            )
        message = await self.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        first: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        sent = len(first)
        if declared is not None:
            framing = b"content-length: %d\r\n" % declared
            chunked = False
            if (more and sent > declared) or (not more and sent != declared):
                raise BadRequestError("The request body does not match its Content-Length.")
        elif not more:
            chunked = False
            framing = b"content-length: %d\r\n" % sent if first or method in _BODY_METHODS else b""
        else:
            chunked = True
            framing = b"transfer-encoding: chunked\r\n"
        if sent > client.max_body_size:
            raise RequestTooLargeError(
                f"The request body is larger than {client.max_body_size} bytes."
            )
        conn, reused = await self._connect()
        head = b"".join(
            (
                method.encode("ascii"),
                b" ",
                self.target,
                b" HTTP/1.1\r\nhost: ",
                self.pool.upstream.host_header,
                b"\r\n",
                request.header_block,
                framing,
                b"\r\n",
            )
        )
        if chunked:
            initial = head + (b"%x\r\n%s\r\n" % (len(first), first) if first else b"")
        else:
            initial = head + first
        replayable = not more and method in _IDEMPOTENT
        read_timeout = min(self.read_timeout, self.timeout)

        while True:
            conn.begin(head=method == "HEAD")
            conn.write(initial)
            try:
                if more:
                    await self._stream_body(conn, sent, declared, chunked)
                    more = False
                while not conn.headers_done and not conn.closed and not conn.failed:
                    await conn.wait(read_timeout)
            except _UpstreamClosedError:
                pass
            if conn.headers_done:
                break
            if conn.closed and not conn.received_any and reused and replayable:
                # Stale pooled connection: closed by the upstream before any response byte.
                conn.close()
                conn, reused = await self._open(reuse=False)
                continue
            cause, note = _lost_cause(conn)
            raise UpstreamUnavailableError(
                "The upstream closed the connection without answering.",
                cause=cause,
                target=_describe(self.pool.upstream),
                note=note,
            )

        await self.send(
            {
                "type": "http.response.start",
                "status": conn.status,
                "headers": _response_headers(conn.raw_headers, self.edits),
            }
        )
        self.started = True
        send = self.send
        while True:
            if conn.chunks:
                data = conn.take()
                final = conn.complete and not conn.chunks
                await send({"type": "http.response.body", "body": data, "more_body": not final})
                if final:
                    break
            elif conn.complete:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                break
            elif conn.failed or conn.closed:
                cause, note = _lost_cause(conn)
                raise UpstreamAbortedError(
                    "The upstream closed the connection mid-response.",
                    cause=cause,
                    target=_describe(self.pool.upstream),
                    note=note,
                )
            else:
                await conn.wait(read_timeout)
        self.conn = None
        if conn.reusable():
            self.pool.release(conn)
        else:
            conn.close()

    async def _open(self, *, reuse: bool) -> tuple[_Connection, bool]:
        """A pooled connection (reused=True) or a new one; raises as :meth:`_Pool.connect`."""
        conn = self.pool.take_idle(asyncio.get_running_loop().time()) if reuse else None
        reused = conn is not None
        if conn is None:
            conn = await self.pool.connect(min(self.connect_timeout, self.timeout))
        self.conn = conn
        return conn, reused

    async def _connect(self) -> tuple[_Connection, bool]:
        """A connection to a healthy target (``self.pool`` becomes its pool).

        A connection failure counts against the target's health; for the
        methods in ``_RETRY_ON_CONNECT_FAILURE`` the next untried target is
        attempted (nothing was sent yet). Raises the last failure, or
        :class:`NoHealthyUpstreamError` when no target may be tried at all.
        """
        targets = self.targets
        if targets is None:
            return await self._open(reuse=True)
        client = self.client
        book = client.health
        if len(targets.upstreams) == 1:
            # One target with a clean record and an idle connection (most requests):
            # nothing to choose and nothing for its health to learn (hot path).
            only = targets.upstreams[0]
            health = book.of(only)
            if health.failures == 0 and health.ejected_until == 0.0:
                pool = client.pool(only)
                conn = pool.take_idle(asyncio.get_running_loop().time())
                if conn is not None:
                    self.pool = pool
                    self.conn = conn
                    return conn, True
        loop = asyncio.get_running_loop()
        tried: tuple[Upstream, ...] = ()
        failure: Exception | None = None
        while True:
            now = loop.time()
            upstream = targets.choose(book, now, tried)
            if upstream is None:
                if failure is not None:
                    raise failure
                error = NoHealthyUpstreamError(
                    "Every upstream target of this route is failing; retry later.",
                    retry_after=targets.retry_after(book, now),
                )
                error.target = ", ".join(_describe(target) for target in targets.upstreams)
                error.note = "every target is ejected by the passive health checks"
                raise error
            self.pool = client.pool(upstream)
            state = book.of(upstream)
            try:
                opened = await self._open(reuse=True)
            except (UpstreamUnavailableError, UpstreamTimeoutError) as exc:
                state.failed(loop.time(), targets.policy)
                tried += (upstream,)
                if self.method in _RETRY_ON_CONNECT_FAILURE and len(tried) < len(targets):
                    failure = exc
                    continue
                raise
            except BaseException:
                state.release()
                raise
            state.succeeded()
            return opened

    async def _stream_body(
        self, conn: _Connection, sent: int, declared: int | None, chunked: bool
    ) -> None:
        limit = self.client.max_body_size
        more = True
        while more:
            await conn.drain()
            data, more = await self._receive_chunk()
            sent += len(data)
            if sent > limit:
                raise RequestTooLargeError(f"The request body is larger than {limit} bytes.")
            if declared is not None and sent > declared:
                raise BadRequestError("The request body does not match its Content-Length.")
            if chunked:
                if data:
                    conn.write(b"%x\r\n%s\r\n" % (len(data), data))
                if not more:
                    conn.write(b"0\r\n\r\n")
            elif data:
                conn.write(data)
        if declared is not None and sent != declared:
            raise BadRequestError("The request body does not match its Content-Length.")
        await conn.drain()
