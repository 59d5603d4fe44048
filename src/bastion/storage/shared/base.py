"""The shared ephemeral state interface: one contract, an in-process and a Redis backend.

Shared ephemeral state is what several bastion nodes must agree on but nobody
needs after a restart: replay caches (authorization codes, DPoP ``jti``,
``private_key_jwt`` ``jti``, TOTP codes), counters, and invalidation broadcasts
("API key X was revoked"). Keys are ``str``, values ``bytes``; every key and
every pub/sub channel is namespaced with the configured ``key_prefix``.

Two backends implement :class:`SharedState`:

- ``memory`` (:class:`~bastion.storage.shared.MemorySharedState`): exact for one
  process only (``exact_across_processes`` is ``False``).
- ``redis`` (:class:`~bastion.storage.shared.RedisSharedState`): exact across every
  process and node using the same Redis and prefix.
"""

from __future__ import annotations

import asyncio
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, ClassVar, Self

from bastion.storage.errors import SharedStateUnavailableError

DEFAULT_KEY_PREFIX = "bastion:"
DEFAULT_SUBSCRIPTION_BUFFER = 1024

# Redis INCRBY works on signed 64-bit integers; the memory backend keeps the same range.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def check_ttl(ttl: float) -> float:
    """Return ``ttl`` (seconds) as a float; raise ``ValueError`` unless finite and > 0.

    A non-positive TTL is a programming error, not bad input from a client, hence
    ``ValueError`` rather than a :class:`~bastion.errors.BastionError`.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise ValueError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    value = float(ttl)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"ttl must be a finite number of seconds > 0, not {ttl!r}")
    return value


def check_amount(amount: int) -> int:
    """Return ``amount``; raise ``ValueError`` unless it is an int in the signed 64-bit range."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be an int, not {type(amount).__name__}")
    if not INT64_MIN <= amount <= INT64_MAX:
        raise ValueError(f"amount {amount} is outside the signed 64-bit range")
    return amount


class _Closable(ABC):
    """An async context manager that calls :meth:`close` when its block ends."""

    @abstractmethod
    async def close(self) -> None:
        """Release what the object holds. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class Subscription(_Closable):
    """Messages published on one channel after the subscription was opened.

    An async iterator of ``bytes`` and an async context manager: leaving the
    ``async with`` block (or calling :meth:`close`) releases the subscription and
    ends the iteration. Messages are buffered per subscription up to a bound; a
    message that finds the buffer full (a slow consumer) is not buffered,
    :attr:`dropped` is incremented and the subscription fails as if lost: every
    message on these channels invalidates something different, so a silently
    dropped one would leave a stale entry (a revoked key) in someone's cache.

    Iteration raises :class:`~bastion.storage.errors.SharedStateUnavailableError`
    (after the messages already buffered) when the backend lost the subscription,
    even for a moment (the Redis connection dropped), or its buffer overflowed:
    messages published meanwhile are lost, so a consumer keeping a cache should
    treat the cache as stale and subscribe again, e.g.::

        while True:
            try:
                async with state.subscribe("revocations") as sub:
                    cache.clear()
                    async for message in sub:
                        cache.pop(message, None)
            except SharedStateUnavailableError:
                await asyncio.sleep(backoff)
    """

    channel: str
    """The channel name as given (without the key prefix)."""

    dropped: int
    """How many messages were dropped because the buffer was full."""

    @abstractmethod
    async def close(self) -> None:
        """Release the subscription; pending and further iteration stops. Idempotent."""

    @abstractmethod
    def __aiter__(self) -> Self: ...

    @abstractmethod
    async def __anext__(self) -> bytes: ...


class BufferedSubscription(Subscription):
    """A :class:`Subscription` fed by a backend through :meth:`deliver` into a bounded buffer.

    Both backends use it: the memory backend delivers from ``publish``, the Redis
    backend from a reader task. Everything here runs on one event loop, so the
    buffer needs no lock.
    """

    def __init__(self, channel: str, *, buffer: int = DEFAULT_SUBSCRIPTION_BUFFER) -> None:
        if buffer < 1:
            raise ValueError(f"subscription buffer must be >= 1, not {buffer}")
        self.channel = channel
        self.dropped = 0
        self._maxsize = buffer
        self._buffer: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def failed(self) -> bool:
        """Whether the backend reported the subscription lost (see :meth:`fail`)."""
        return self._error is not None

    def deliver(self, message: bytes) -> None:
        """Buffer one message for the consumer; when the buffer is full, fail instead.

        Ignored once closed or failed: after a failure the consumer must not see
        later messages as if nothing had been missed.
        """
        if self._closed or self._error is not None:
            return
        if len(self._buffer) >= self._maxsize:
            self.dropped += 1
            self.fail(
                SharedStateUnavailableError(
                    f"subscription to {self.channel!r} overflowed ({self._maxsize} messages "
                    "waiting): later messages were lost"
                )
            )
            return
        self._buffer.append(message)
        self._wakeup.set()

    def fail(self, error: BaseException) -> None:
        """Make iteration raise ``error`` once the already buffered messages are consumed.

        The first failure wins; later ones are consequences of it.
        """
        if self._error is None:
            self._error = error
        self._wakeup.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        """The next message; raises StopAsyncIteration once closed, or the backend's error."""
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                return self._buffer.popleft()
            if self._error is not None:
                raise self._error
            self._wakeup.clear()
            await self._wakeup.wait()

    async def close(self) -> None:
        """Release the subscription (see :meth:`_release`); buffered messages are discarded."""
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._wakeup.set()
        await self._release()

    @abstractmethod
    async def _release(self) -> None:
        """Detach from the backend (unregister, close the connection)."""


class SubscribeContext(Awaitable[Subscription]):
    """What :meth:`SharedState.subscribe` returns: await it, or use it with ``async with``.

    ``sub = await state.subscribe("ch")`` opens a subscription the caller closes;
    ``async with state.subscribe("ch") as sub:`` closes it when the block ends.
    Either way the subscription is live (messages published from then on are
    delivered) once the await / ``__aenter__`` returns.
    """

    def __init__(self, opener: Callable[[], Awaitable[Subscription]]) -> None:
        self._opener = opener
        self._subscription: Subscription | None = None

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self._opener().__await__()

    async def __aenter__(self) -> Subscription:
        self._subscription = await self._opener()
        return self._subscription

    async def __aexit__(self, *exc_info: object) -> None:
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None


class SharedState(_Closable):
    """Shared ephemeral key/value state with TTLs, atomic add/incr and pub/sub.

    All operations are coroutines. Operations of the Redis backend raise
    :class:`~bastion.storage.errors.SharedStateUnavailableError` when Redis cannot
    be reached (within about a second); no driver exception leaks. Invalid
    arguments (a TTL <= 0) raise ``ValueError``.
    """

    backend: ClassVar[str]
    """``"memory"`` or ``"redis"``."""

    exact_across_processes: ClassVar[bool]
    """Whether counters, replay caches and pub/sub are shared by every process.

    ``False`` for the in-process backend: the server warns when several worker
    processes run with it.
    """

    def __init__(self, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> None:
        self.key_prefix = key_prefix

    def namespaced(self, key: str) -> str:
        """The full name of ``key`` (or of a channel) in the backend: prefix + key.

        Backends extensions (Lua scripts) use it to address the same keys.
        """
        return self.key_prefix + key

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or ``None`` when absent or expired."""

    @abstractmethod
    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing any value and TTL.

        ``ttl`` in seconds; ``None`` keeps the key until deleted.
        """

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""

    @abstractmethod
    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        """Store ``value`` under ``key`` only if absent, atomically; ``True`` the first time.

        This is the replay-cache primitive: of any number of concurrent calls with
        the same key (from any process, for Redis) exactly one returns ``True``
        until the key expires after ``ttl`` seconds.
        """

    @abstractmethod
    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Atomically add ``amount`` to the integer under ``key`` and return the new value.

        An absent key counts from 0; ``ttl`` (seconds) is applied only when this
        call creates the key, never extended by later increments. Raises
        :class:`~bastion.storage.shared.errors.SharedStateValueError` when the key
        holds something other than a signed 64-bit integer or the result would
        overflow it.
        """

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` when it is absent or has no expiry."""

    @abstractmethod
    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every current subscriber of ``channel``."""

    @abstractmethod
    def deliver_local(self, channel: str, message: bytes) -> None:
        """Hand ``message`` to this process's subscriptions of ``channel`` only (no network).

        The change feed's follower (``storage/feed.py``) uses it: each node
        reads the feed itself, so a message it delivers concerns this process.
        """

    def subscribe(self, channel: str) -> SubscribeContext:
        """Subscribe to ``channel``: ``await`` the result or use it with ``async with``.

        Messages published after the subscription is open are delivered to it
        (in every process for Redis, in this process for memory).
        """
        return SubscribeContext(lambda: self._open_subscription(channel))

    @abstractmethod
    async def _open_subscription(self, channel: str) -> Subscription:
        """Open a live subscription to ``channel`` (the backend part of :meth:`subscribe`)."""

    @abstractmethod
    async def ping(self) -> None:
        """Return when the backend answers; raise SharedStateUnavailableError (bounded ~1 s)."""

    @abstractmethod
    async def close(self) -> None:
        """Close open subscriptions and release connections. Idempotent."""
