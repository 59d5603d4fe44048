"""The Redis shared state backend (redis-py asyncio), exact across processes and nodes.

Every Redis failure is translated to
:class:`~bastion.storage.errors.SharedStateUnavailableError` naming the redacted
URL; no redis-py exception leaks. Connections use short socket timeouts, one
quick retry on a fresh connection (so a Redis restart costs at most one failed
call per pooled connection) and a health check on idle connections, so the
client recovers by itself when Redis comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import DataError, RedisError, ResponseError

from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared._url import redact_url
from bastion.storage.shared.base import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_SUBSCRIPTION_BUFFER,
    BufferedSubscription,
    SharedState,
    Subscription,
    check_amount,
    check_ttl,
)
from bastion.storage.shared.errors import SharedStateConfigError, SharedStateValueError
from bastion.storage.shared.resp import RespPipeline, native_config, open_pipeline

CONNECT_TIMEOUT = 1.0
OPERATION_TIMEOUT = 1.0
HEALTH_CHECK_INTERVAL = 10.0
MAX_CONNECTIONS = 64

# How long a subscription's reader waits for a message before looping; each loop
# lets redis-py send its health-check PING on an idle subscription connection.
_SUBSCRIPTION_POLL = 5.0

# The TTL is applied only when this call creates the key; EXISTS + INCRBY +
# PEXPIRE run atomically inside the script.
_INCR_SCRIPT = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# ResponseError texts that mean "this key holds the wrong value", a caller bug.
_VALUE_ERRORS = ("WRONGTYPE", "not an integer", "would overflow")


def _milliseconds(ttl: float) -> int:
    # Round up so a tiny positive TTL never becomes 0 (which Redis rejects).
    return max(1, math.ceil(check_ttl(ttl) * 1000))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _RedisSubscription(BufferedSubscription):
    """One Redis SUBSCRIBE on its own pooled connection, read by a background task."""

    def __init__(
        self, state: RedisSharedState, channel: str, pubsub: PubSub, *, buffer: int
    ) -> None:
        super().__init__(channel, buffer=buffer)
        self._state = state
        self._pubsub = pubsub
        self._reader: asyncio.Task[None] | None = None

    async def start(self, full_channel: str, wait: float) -> None:
        """Subscribe and wait for Redis to confirm, then start reading.

        Waiting for the confirmation is what makes "messages published after
        subscribe() returns are delivered" true: Redis has registered us.
        """
        await self._pubsub.subscribe(full_channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError("no subscribe confirmation from Redis")
            message = await self._pubsub.get_message(timeout=remaining)
            if message is not None and message["type"] == "subscribe":
                break
        connection = self._pubsub.connection
        if connection is not None:
            # redis-py reconnects and re-subscribes by itself, silently losing what
            # was published in between; a cache must hear about that gap.
            connection.register_connect_callback(self._on_reconnect)
        self._reader = asyncio.create_task(
            self._read(), name=f"bastion-shared-subscription:{self.channel}"
        )

    def _on_reconnect(self, connection: object) -> None:
        self.fail(
            SharedStateUnavailableError(
                f"Redis at {self._state.url} is unavailable (subscription to "
                f"{self.channel!r}): the connection was lost and messages may have been missed"
            )
        )

    async def _read(self) -> None:
        try:
            while not self.failed:
                message = await self._pubsub.get_message(timeout=_SUBSCRIPTION_POLL)
                if message is not None and message["type"] == "message":
                    self.deliver(message["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Anything else ends this subscription: the consumer learns it from
            # iteration and must assume it missed messages.
            self.fail(self._state.unavailable(exc, f"subscription to {self.channel!r}"))
        # Failed: give the connection back now rather than when the consumer closes.
        await self._disconnect()

    async def _disconnect(self) -> None:
        connection = self._pubsub.connection
        if connection is not None:
            connection.deregister_connect_callback(self._on_reconnect)
        # Closing never fails loudly: the connection may already be gone.
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _release(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await self._disconnect()
        self._state._subscriptions.discard(self)


class RedisSharedState(SharedState):
    """Shared state in Redis: exact across every process and node sharing Redis and prefix.

    ``client`` is the underlying ``redis.asyncio.Redis`` (``decode_responses``
    off), kept public so other packages can register Lua scripts on it (address
    keys with :meth:`namespaced`, wrap calls in :meth:`translate_errors`).
    """

    backend: ClassVar[str] = "redis"
    exact_across_processes: ClassVar[bool] = True

    def __init__(
        self,
        client: Redis,
        *,
        url: str,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
        operation_timeout: float = OPERATION_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        """Wrap an existing client; ``url`` is shown redacted in error messages (and
        used, with its credentials, by :meth:`open_hot_path`)."""
        super().__init__(key_prefix=key_prefix)
        self.client = client
        self.url = redact_url(url)
        self._full_url = url
        self._connect_timeout = connect_timeout
        self._hot_paths: list[RespPipeline] = []
        self._subscription_buffer = subscription_buffer
        self._operation_timeout = operation_timeout
        self._subscriptions: set[_RedisSubscription] = set()
        self._incr = client.register_script(_INCR_SCRIPT)
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisSharedState(url={self.url!r}, key_prefix={self.key_prefix!r})"

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
        connect_timeout: float = CONNECT_TIMEOUT,
        operation_timeout: float = OPERATION_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        health_check_interval: float = HEALTH_CHECK_INTERVAL,
        client_name: str = "bastion",
    ) -> RedisSharedState:
        """Connect to the Redis at ``url`` (``redis://``, ``rediss://``, ``unix://``) and PING it.

        Raises SharedStateConfigError when redis-py cannot parse the URL, and
        SharedStateUnavailableError (one line: redacted URL and cause) when Redis
        does not answer.
        """
        try:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                # Waiting for a free pooled connection is bounded like any operation.
                timeout=operation_timeout,
                socket_connect_timeout=connect_timeout,
                socket_timeout=operation_timeout,
                health_check_interval=health_check_interval,
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
                # Shows in CLIENT LIST, so operators can tell bastion's connections apart.
                client_name=client_name,
            )
        except (ValueError, TypeError, DataError) as exc:
            raise SharedStateConfigError(
                f"shared state URL {redact_url(url)} is not a valid Redis URL: {_one_line(exc)}"
            ) from None
        state = cls(
            Redis.from_pool(pool),
            url=url,
            key_prefix=key_prefix,
            subscription_buffer=subscription_buffer,
            operation_timeout=operation_timeout,
            connect_timeout=connect_timeout,
        )
        try:
            await state.ping()
        except SharedStateUnavailableError:
            await state.close()
            raise
        return state

    def open_hot_path(self, timeout: float, operation: str) -> RespPipeline | None:
        """A pipelined connection of its own for a hot-path command (``storage/shared/resp.py``).

        ``None`` for URLs it does not serve (``rediss://``, redis-py-only options):
        the caller then uses :attr:`client`. Closed with this state.
        """
        pipeline = open_pipeline(
            self._full_url,
            label=self.url,
            connect_timeout=self._connect_timeout,
            timeout=timeout,
            operation=operation,
        )
        if pipeline is not None:
            self._hot_paths.append(pipeline)
        return pipeline

    def native_hot_path_config(self, timeout: float) -> dict[str, Any] | None:
        """The native data plane's connection settings for this Redis (``resp.native_config``).

        ``None`` for URLs the native connection does not serve (``rediss://`` with TLS
        options other than redis-py's defaults, ``ssl_ca_certs`` and a client certificate).
        """
        return native_config(
            self._full_url,
            key_prefix=self.key_prefix,
            connect_timeout=self._connect_timeout,
            timeout=timeout,
        )

    # -- errors ----------------------------------------------------------------------

    def unavailable(self, exc: BaseException, operation: str) -> SharedStateUnavailableError:
        """The SharedStateUnavailableError for ``exc`` raised during ``operation``."""
        return SharedStateUnavailableError(
            f"Redis at {self.url} is unavailable ({operation}): {_one_line(exc)}"
        )

    @contextlib.contextmanager
    def translate_errors(self, operation: str) -> Iterator[None]:
        """Translate redis-py and socket exceptions raised inside the block.

        Wrong-value replies (WRONGTYPE, not an integer, overflow) and redis-py's
        DataError become SharedStateValueError; everything else (connection
        lost, timeouts, LOADING, READONLY, OOM …) SharedStateUnavailableError.
        """
        try:
            yield
        except DataError as exc:
            raise SharedStateValueError(f"{operation}: {_one_line(exc)}") from exc
        except ResponseError as exc:
            if any(marker in str(exc) for marker in _VALUE_ERRORS):
                raise SharedStateValueError(f"{operation}: {_one_line(exc)}") from exc
            raise self.unavailable(exc, operation) from exc
        except (RedisError, OSError, TimeoutError) as exc:
            raise self.unavailable(exc, operation) from exc

    # -- key/value -------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or ``None``; raises SharedStateUnavailableError."""
        with self.translate_errors("GET"):
            value: Any = await self.client.get(self.namespaced(key))
        # decode_responses is off: redis-py returns bytes or None.
        return None if value is None else bytes(value)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """SET with PX (replacing value and TTL); raises SharedStateUnavailableError."""
        px = None if ttl is None else _milliseconds(ttl)
        with self.translate_errors("SET"):
            await self.client.set(self.namespaced(key), value, px=px)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed. Raises SharedStateUnavailableError."""
        with self.translate_errors("DEL"):
            removed: int = await self.client.delete(self.namespaced(key))
        return removed > 0

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        """SET NX PX: ``True`` only for the first writer. Raises SharedStateUnavailableError."""
        px = _milliseconds(ttl)
        with self.translate_errors("SET NX"):
            created: Any = await self.client.set(self.namespaced(key), value, px=px, nx=True)
        return bool(created)

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Atomic INCRBY (+ PEXPIRE when created) in one Lua script.

        Raises SharedStateValueError for a non-integer value or overflow,
        SharedStateUnavailableError when Redis cannot be reached.
        """
        check_amount(amount)
        px = "" if ttl is None else str(_milliseconds(ttl))
        with self.translate_errors("INCRBY"):
            result: Any = await self._incr(keys=[self.namespaced(key)], args=[amount, px])
        return int(result)

    async def ttl(self, key: str) -> float | None:
        """PTTL in seconds; ``None`` if absent or persistent. Raises SharedStateUnavailableError."""
        with self.translate_errors("PTTL"):
            remaining: int = await self.client.pttl(self.namespaced(key))
        # -2: no such key, -1: no expiry.
        return None if remaining < 0 else remaining / 1000

    # -- pub/sub ---------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        """PUBLISH on the prefixed channel. Raises SharedStateUnavailableError."""
        with self.translate_errors("PUBLISH"):
            await self.client.publish(self.namespaced(channel), message)

    def deliver_local(self, channel: str, message: bytes) -> None:
        """Hand ``message`` to this process's subscriptions of ``channel`` (Redis is not used)."""
        payload = bytes(message)
        for subscription in tuple(self._subscriptions):
            if subscription.channel == channel:
                subscription.deliver(payload)

    async def _open_subscription(self, channel: str) -> Subscription:
        """SUBSCRIBE on a dedicated pooled connection; raises SharedStateUnavailableError."""
        pubsub = self.client.pubsub()
        subscription = _RedisSubscription(self, channel, pubsub, buffer=self._subscription_buffer)
        try:
            with self.translate_errors(f"SUBSCRIBE {channel!r}"):
                await subscription.start(self.namespaced(channel), self._operation_timeout)
        except BaseException:
            await subscription.close()
            raise
        self._subscriptions.add(subscription)
        return subscription

    # -- lifecycle -------------------------------------------------------------------

    async def ping(self) -> None:
        """PING, bounded by the operation timeout; raises SharedStateUnavailableError."""
        try:
            async with asyncio.timeout(self._operation_timeout):
                with self.translate_errors("PING"):
                    await self.client.ping()
        except TimeoutError as exc:
            raise SharedStateUnavailableError(
                f"Redis at {self.url} is unavailable (PING): "
                f"no answer within {self._operation_timeout:g}s"
            ) from exc

    async def close(self) -> None:
        """Close every subscription, then the client and its pool. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for subscription in tuple(self._subscriptions):
            await subscription.close()
        for pipeline in self._hot_paths:
            await pipeline.close()
        with contextlib.suppress(Exception):
            await self.client.aclose()
