"""One pipelined Redis connection for the gateway's hot path (the rate limiter's script).

Why our own client: redis-py's asyncio client spends about 90 µs of CPU per
command on these machines (connection-pool checkout, retry wrapper, asyncio
streams, a timeout context per call), measured with 50 commands in flight; on the
gateway's single core that was a third of a rate-limited request's cost in
cluster mode. Here one ``asyncio.Protocol`` writes each command as it comes and
hiredis' C reader parses the replies, which Redis sends back in order (RESP
pipelining), so one connection serves every request in flight: about 12 µs per
command. Everything else (subscriptions, the deny-list, the CLI) keeps using
redis-py; so does this hot path on ``rediss://`` (TLS) URLs, which
:func:`open_pipeline` declines.

Failure model, all surfacing as :class:`~bastion.storage.errors.SharedStateUnavailableError`:

- connecting (TCP or unix socket, then ``AUTH`` / ``SELECT`` / ``CLIENT SETNAME``)
  fails or takes longer than ``connect_timeout``: every caller waiting for it fails;
  the next call tries again;
- the connection breaks: every command in flight fails (which of them Redis
  executed is unknown, as with any client), the next call reconnects;
- the oldest reply is late by more than ``timeout``: the connection is dropped as
  broken, so a stalled Redis costs a request at most about ``1.25 * timeout``
  (one timer per connection checks the oldest command; replies come in order,
  so nothing behind it can be on time either);
- a caller that gives up (cancelled) leaves its slot in the queue, and its reply is
  read and dropped: the replies of the others stay matched to their commands.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import hiredis

from bastion.storage.errors import SharedStateUnavailableError

__all__ = ["RespPipeline", "native_config", "open_pipeline"]

Arg = bytes | str | int


def _pack(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Connection(asyncio.Protocol):
    """The socket: writes packed commands, hands replies to their futures in order."""

    def __init__(self, owner: RespPipeline) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        # (future, loop time sent) per command in flight, oldest first.
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.broken: SharedStateUnavailableError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        try:
            reader.feed(data)
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                if not self.waiting:
                    self.fail("a reply nobody asked for")
                    return
                future, _ = self.waiting.popleft()
                if not future.done():  # a cancelled caller's reply is dropped
                    future.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.fail(f"protocol error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(f"connection lost: {exc}" if exc else "connection closed by Redis")

    def fail(self, why: str) -> None:
        """Break the connection: every command in flight fails, the owner reconnects next."""
        if self.broken is None:
            self.broken = self.owner.unavailable(why)
        if self.owner._conn is self:
            self.owner._conn = None
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(self.broken)
        if self.transport is not None:
            self.transport.abort()

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        loop = self.owner.loop
        future: asyncio.Future[Any] = loop.create_future()
        if self.broken is not None:
            future.set_exception(self.broken)
            return future
        self.waiting.append((future, loop.time()))
        assert self.transport is not None
        self.transport.write(packed)
        self.owner._watch()
        return future


class RespPipeline:
    """Commands to one Redis over one pipelined connection (see the module docstring).

    ``host``/``port`` or ``path`` (unix socket), with ``db``, ``username`` and
    ``password`` as in the shared state's URL; ``label`` (the redacted URL) and
    ``operation`` (what the connection is for) name it in error messages.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        client_name: str = "bastion-hot-path",
        connect_timeout: float = 1.0,
        timeout: float = 1.0,
        label: str = "redis",
        operation: str = "hot path",
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self.db = db
        self.username, self.password = username, password
        self.client_name = client_name
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.label = label
        self.operation = operation
        self._conn: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def unavailable(self, why: str) -> SharedStateUnavailableError:
        return SharedStateUnavailableError(
            f"Redis at {self.label} is unavailable ({self.operation}): {why}"
        )

    async def call(self, *args: Arg) -> Any:
        """Send one command and return its reply (a ``hiredis.ReplyError`` is returned, not raised).

        Raises SharedStateUnavailableError as described in the module docstring.
        """
        conn = self._conn
        if conn is None:
            conn = await self._connect()
        return await conn.send(_pack(args))

    async def evalsha(self, sha: str, script: str, keys: list[str], args: list[int]) -> Any:
        """``EVALSHA``, falling back to ``EVAL`` (which caches the script) on ``NOSCRIPT``.

        Any other error reply raises SharedStateUnavailableError.
        """
        reply = await self.call("EVALSHA", sha, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self.call("EVAL", script, len(keys), *keys, *args)
        if isinstance(reply, hiredis.ReplyError):
            raise self.unavailable(f"error reply: {reply}")
        return reply

    async def close(self) -> None:
        """Close the connection; later calls fail. Idempotent."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail("closed")

    # -- internals ---------------------------------------------------------------

    async def _connect(self) -> _Connection:
        if self._closed:
            raise self.unavailable("closed")
        if self._connecting is not None:
            return await asyncio.shield(self._connecting)
        # One attempt shared by every caller that arrives while it runs.
        attempt: asyncio.Future[_Connection] = self.loop.create_future()
        self._connecting = attempt
        try:
            conn = await self._open()
        except SharedStateUnavailableError as exc:
            attempt.set_exception(exc)
            raise
        except BaseException:  # cancelled: the callers sharing the attempt must not hang
            attempt.set_exception(self.unavailable("connection attempt cancelled"))
            raise
        else:
            attempt.set_result(conn)
            return conn
        finally:
            self._connecting = None
            attempt.exception()  # retrieved: an attempt nobody else awaited logs no warning

    async def _open(self) -> _Connection:
        loop = self.loop
        conn: _Connection | None = None
        replies: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.path is not None:
                    _, conn = await loop.create_unix_connection(
                        lambda: _Connection(self), self.path
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self), self.host, self.port
                    )
                hello: list[tuple[Arg, ...]] = []
                if self.password is not None:
                    hello.append(
                        ("AUTH", self.username, self.password)
                        if self.username
                        else ("AUTH", self.password)
                    )
                if self.db:
                    hello.append(("SELECT", self.db))
                hello.append(("CLIENT", "SETNAME", self.client_name))
                replies += [conn.send(_pack(command)) for command in hello]
                for command, reply in zip(hello, replies, strict=True):
                    answer = await reply
                    if isinstance(answer, hiredis.ReplyError):
                        raise self.unavailable(f"{command[0]!s} refused: {answer}")
            if self._closed:
                raise self.unavailable("closed")
        except BaseException as exc:
            if conn is not None:
                conn.fail("connection set-up failed")
                for pending in replies:  # failed by conn.fail(): retrieved, no warnings
                    if not pending.cancelled():
                        pending.exception()
            if isinstance(exc, TimeoutError):
                raise self.unavailable(f"no connection within {self.connect_timeout:g} s") from None
            if isinstance(exc, OSError):
                raise self.unavailable(f"cannot connect: {exc}") from None
            raise
        self._conn = conn
        return conn

    def _watch(self) -> None:
        if self._timer is None:
            self._timer = self.loop.call_later(self.timeout / 4, self._check)

    def _check(self) -> None:
        """Every ``timeout / 4`` while commands are in flight: is the oldest overdue?"""
        self._timer = None
        conn = self._conn
        if conn is None or not conn.waiting:
            return
        _, sent = conn.waiting[0]
        if self.loop.time() - sent > self.timeout:
            conn.fail(f"no reply within {self.timeout:g} s")
            return
        self._timer = self.loop.call_later(self.timeout / 4, self._check)


def _parse_url(url: str) -> dict[str, Any] | None:
    """redis-py's reading of ``url`` when it is a plain TCP or unix socket one, else ``None``.

    redis-py is imported here, not at the top: the gateway compiles its limits
    section through this module, and a node on in-process shared state never
    needs redis-py (nor the OpenTelemetry SDK it loads, ~15 MiB resident).
    """
    from redis.asyncio.connection import UnixDomainSocketConnection, parse_url

    try:
        kwargs: dict[str, Any] = dict(parse_url(url))
    except ValueError:
        return None
    if kwargs.pop("connection_class", UnixDomainSocketConnection) is not UnixDomainSocketConnection:
        return None  # rediss://: redis-py's TLS options are not reproduced here
    if set(kwargs) - {"host", "port", "path", "db", "username", "password"}:
        return None
    return kwargs


#: redis-py's TLS options the native connection applies (``native/src/limit/redis_tls.rs``).
_NATIVE_TLS_FILES = {
    "ssl_ca_certs": "ca_certs",
    "ssl_certfile": "certfile",
    "ssl_keyfile": "keyfile",
}


def _parse_tls_url(url: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """redis-py's reading of a ``rediss://`` ``url`` and its TLS files, when the native
    connection sets TLS up exactly as redis-py would; else ``None``.

    That is redis-py's defaults — the server's chain verified against the system store
    plus ``ssl_ca_certs``, its name checked — with an optional client certificate
    (``ssl_certfile`` and ``ssl_keyfile`` together). Any other TLS option
    (``ssl_cert_reqs=none``, ``ssl_check_hostname=false``, ``ssl_ca_path``,
    ``ssl_min_version`` …) is redis-py's alone.
    """
    from redis.asyncio.connection import SSLConnection, parse_url

    try:
        kwargs: dict[str, Any] = dict(parse_url(url))
    except ValueError:
        return None
    if kwargs.pop("connection_class", None) is not SSLConnection:
        return None
    if kwargs.pop("ssl_cert_reqs", "required") != "required":
        return None
    if kwargs.pop("ssl_check_hostname", True) is not True:
        return None
    tls = {native: kwargs.pop(option, None) for option, native in _NATIVE_TLS_FILES.items()}
    if (tls["certfile"] is None) != (tls["keyfile"] is None):
        return None
    if set(kwargs) - {"host", "port", "db", "username", "password"}:
        return None
    return kwargs, tls


def native_config(
    url: str, *, key_prefix: str, connect_timeout: float, timeout: float
) -> dict[str, Any] | None:
    """What the native data plane's pipelined connection needs for ``url``, or ``None``.

    ``redis://`` and ``unix://`` as :func:`open_pipeline` accepts them, and
    ``rediss://`` where the native connection applies every TLS option of the URL
    (:func:`_parse_tls_url`; ``"tls"`` then holds its files). Read by redis-py's own
    parser, so both planes reach the same server and database, and trust the same
    certificates. Holds the password: pass it to ``bastion._native``, never log it.
    """
    tls: dict[str, Any] | None = None
    kwargs = _parse_url(url)
    if kwargs is None:
        parsed = _parse_tls_url(url)
        if parsed is None:
            return None
        kwargs, tls = parsed
    return {
        "host": kwargs.get("host"),
        "port": int(kwargs.get("port") or 6379),
        "path": kwargs.get("path"),
        "db": int(kwargs.get("db") or 0),
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "key_prefix": key_prefix,
        "connect_timeout": connect_timeout,
        "timeout": timeout,
        "tls": tls,
    }


def native_refusal(url: str) -> str | None:
    """Why the native data plane's connection cannot serve ``url`` (``None``: it can).

    The settings refuse such a URL (``shared.url``), so every route's limits stay
    native: what :func:`native_config` does not take is named, option by option.
    """
    if native_config(url, key_prefix="", connect_timeout=1.0, timeout=1.0) is not None:
        return None
    from redis.asyncio.connection import SSLConnection, parse_url

    try:
        kwargs: dict[str, Any] = dict(parse_url(url))
    except ValueError as exc:
        return f"redis-py cannot read it ({exc})"
    known = {"host", "port", "path", "db", "username", "password"}
    if kwargs.pop("connection_class", None) is SSLConnection:
        known |= set(_NATIVE_TLS_FILES)
        if (kwargs.get("ssl_certfile") is None) != (kwargs.get("ssl_keyfile") is None):
            return "ssl_certfile and ssl_keyfile go together (a client certificate and its key)"
    unknown = sorted(set(kwargs) - known)
    named = ", ".join(unknown) if unknown else "its options"
    return (
        f"the native limiter does not apply {named}: a URL may carry only the host, port, "
        "database, user and password, and for rediss:// ssl_ca_certs, ssl_certfile and "
        "ssl_keyfile (the server's certificate is always verified and its name checked)"
    )


def open_pipeline(
    url: str, *, label: str, connect_timeout: float, timeout: float, operation: str = "hot path"
) -> RespPipeline | None:
    """A :class:`RespPipeline` for a ``redis://`` or ``unix://`` URL; ``None`` for others.

    The URL is read by redis-py's own parser, so this connection reaches the same
    server and database as the shared state's client. ``rediss://`` (TLS) and URLs
    with options only redis-py applies (timeouts, TLS files, protocol …) are left
    to redis-py.
    """
    kwargs = _parse_url(url)
    if kwargs is None:
        return None
    return RespPipeline(
        **kwargs,
        connect_timeout=connect_timeout,
        timeout=timeout,
        label=label,
        operation=operation,
    )
