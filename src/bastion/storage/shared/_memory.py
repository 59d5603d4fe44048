"""The in-process shared state backend: a dict with expiry times, pub/sub through buffers.

Exact for one process only. Everything runs on one event loop and no operation
awaits between reading and writing the dict, so every operation is atomic
without locks.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable
from typing import ClassVar

from bastion.storage.shared.base import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_SUBSCRIPTION_BUFFER,
    INT64_MAX,
    INT64_MIN,
    BufferedSubscription,
    SharedState,
    Subscription,
    check_amount,
    check_ttl,
)
from bastion.storage.shared.errors import SharedStateValueError

# What Redis INCRBY accepts as an integer: no sign '+', no spaces, no leading zeros.
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")


class _MemorySubscription(BufferedSubscription):
    def __init__(self, state: MemorySharedState, channel: str, *, buffer: int) -> None:
        super().__init__(channel, buffer=buffer)
        self._state = state

    async def _release(self) -> None:
        self._state._unsubscribe(self)


class MemorySharedState(SharedState):
    """Shared state kept in this process (the single-node default).

    Expired keys are removed lazily when touched, and by a sweep on writes that
    pops expired entries off a heap of expiry times, so memory does not grow with
    keys nobody reads again. ``clock`` (seconds, monotonic) is injectable for tests.
    """

    backend: ClassVar[str] = "memory"
    exact_across_processes: ClassVar[bool] = False

    def __init__(
        self,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        subscription_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(key_prefix=key_prefix)
        self._clock = clock
        self._subscription_buffer = subscription_buffer
        # full key -> (value, expiry in clock seconds or None)
        self._data: dict[str, tuple[bytes, float | None]] = {}
        # (expiry, full key); entries go stale when a key is rewritten, and are
        # checked against _data when popped.
        self._expiries: list[tuple[float, str]] = []
        self._channels: dict[str, set[_MemorySubscription]] = {}

    def __repr__(self) -> str:
        return f"MemorySharedState(key_prefix={self.key_prefix!r})"

    # -- key/value -------------------------------------------------------------------

    def _live(self, full_key: str, now: float) -> tuple[bytes, float | None] | None:
        entry = self._data.get(full_key)
        if entry is None:
            return None
        expiry = entry[1]
        if expiry is not None and expiry <= now:
            del self._data[full_key]
            return None
        return entry

    def _store(self, full_key: str, value: bytes, expiry: float | None, now: float) -> None:
        self._sweep(now)
        self._data[full_key] = (value, expiry)
        if expiry is not None:
            heapq.heappush(self._expiries, (expiry, full_key))

    def _sweep(self, now: float) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, full_key = heapq.heappop(heap)
            entry = self._data.get(full_key)
            # Only delete if the entry still carries this expiry (it may have been
            # rewritten with a later one, or without one).
            if entry is not None and entry[1] is not None and entry[1] <= now:
                del self._data[full_key]
        # Keys rewritten again and again with a long TTL leave stale heap entries
        # behind; rebuild when they dominate so the heap stays O(live keys).
        if len(heap) > 2 * len(self._data) + 1024:
            self._expiries = [(e, k) for k, (_, e) in self._data.items() if e is not None]
            heapq.heapify(self._expiries)

    async def get(self, key: str) -> bytes | None:
        """The value under ``key``, or ``None`` when absent or expired."""
        entry = self._live(self.namespaced(key), self._clock())
        return None if entry is None else entry[0]

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, replacing value and TTL; ``ValueError`` on ttl <= 0."""
        now = self._clock()
        expiry = None if ttl is None else now + check_ttl(ttl)
        self._store(self.namespaced(key), bytes(value), expiry, now)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed (and had not expired)."""
        full_key = self.namespaced(key)
        if self._live(full_key, self._clock()) is None:
            return False
        del self._data[full_key]
        return True

    async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
        """Store ``value`` only if ``key`` is absent; ``True`` the first time."""
        seconds = check_ttl(ttl)
        now = self._clock()
        full_key = self.namespaced(key)
        if self._live(full_key, now) is not None:
            return False
        self._store(full_key, bytes(value), now + seconds, now)
        return True

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add ``amount`` to the integer under ``key``; ``ttl`` only applies on creation.

        Raises SharedStateValueError when the value is not a 64-bit integer or
        the result would overflow.
        """
        check_amount(amount)
        seconds = None if ttl is None else check_ttl(ttl)
        now = self._clock()
        full_key = self.namespaced(key)
        entry = self._live(full_key, now)
        if entry is None:
            current, expiry = 0, (None if seconds is None else now + seconds)
        else:
            raw, expiry = entry
            if _INTEGER.fullmatch(raw) is None or not INT64_MIN <= int(raw) <= INT64_MAX:
                raise SharedStateValueError(f"the value under {key!r} is not a 64-bit integer")
            current = int(raw)
        result = current + amount
        if not INT64_MIN <= result <= INT64_MAX:
            raise SharedStateValueError(f"incrementing {key!r} by {amount} would overflow")
        if entry is None:
            self._store(full_key, str(result).encode(), expiry, now)
        else:
            # Same expiry: rewrite in place without pushing a new heap entry.
            self._data[full_key] = (str(result).encode(), expiry)
        return result

    async def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` when absent or without expiry."""
        now = self._clock()
        entry = self._live(self.namespaced(key), now)
        if entry is None or entry[1] is None:
            return None
        return entry[1] - now

    # -- pub/sub ---------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        """Deliver ``message`` to every subscription of ``channel`` in this process."""
        self.deliver_local(channel, message)

    def deliver_local(self, channel: str, message: bytes) -> None:
        """Like :meth:`publish`: this process is the only one there is."""
        payload = bytes(message)
        for subscription in tuple(self._channels.get(self.namespaced(channel), ())):
            subscription.deliver(payload)

    async def _open_subscription(self, channel: str) -> Subscription:
        subscription = _MemorySubscription(self, channel, buffer=self._subscription_buffer)
        self._channels.setdefault(self.namespaced(channel), set()).add(subscription)
        return subscription

    def _unsubscribe(self, subscription: _MemorySubscription) -> None:
        full_channel = self.namespaced(subscription.channel)
        subscribers = self._channels.get(full_channel)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._channels[full_channel]

    # -- lifecycle -------------------------------------------------------------------

    async def ping(self) -> None:
        """Always answers: the state is in this process."""

    async def close(self) -> None:
        """Close every open subscription and drop all keys. Idempotent."""
        for subscribers in tuple(self._channels.values()):
            for subscription in tuple(subscribers):
                await subscription.close()
        self._channels.clear()
        self._data.clear()
        self._expiries.clear()
