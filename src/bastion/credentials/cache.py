"""The cached lookup of stored credentials, and the channel every change drops it through.

A credential service reads a record once and serves it from memory for a few
seconds (:class:`TtlCache`, :class:`CachedLookup`). Every change to a record
drops it here at once and, through the change feed's channel of its kind
(:mod:`bastion.storage.feed`: ``"api-keys"``, ``"clients"``), in every other
process (:class:`ChangeChannel`): the SQL repositories write the feed row in
the change's transaction, the service publishes the id for nodes on Redis, and
each node's follower hands it to :meth:`ChangeChannel.follow`.

A read that was out while a change arrived is returned but not kept (the
cache's ``epoch`` moved): it may predate the change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import SharedState
from bastion.storage.shared.invalidation import follow_invalidations

__all__ = ["CachedLookup", "ChangeChannel", "TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """A bounded map whose entries are fresh for a time; the oldest entry goes first when full.

    Times are :func:`time.monotonic` seconds. Expired entries stay until
    replaced, popped or pushed out (they count in ``len``), and are never returned.
    """

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, now: float | None = None) -> V | None:
        """The value of ``key`` while it is fresh, else ``None``."""
        found = self._entries.get(key)
        if found is None or found[1] <= (time.monotonic() if now is None else now):
            return None
        return found[0]

    def fresh_for(self, key: K, now: float | None = None) -> float:
        """Seconds ``key`` stays fresh (0 when absent or expired)."""
        found = self._entries.get(key)
        if found is None:
            return 0.0
        return max(0.0, found[1] - (time.monotonic() if now is None else now))

    def put(self, key: K, value: V, ttl: float, now: float | None = None) -> list[V]:
        """Keep ``value`` for ``ttl`` seconds; return the values pushed out to make room."""
        self._entries[key] = (value, (time.monotonic() if now is None else now) + ttl)
        self._entries.move_to_end(key)
        evicted: list[V] = []
        while len(self._entries) > self._max_entries:
            evicted.append(self._entries.popitem(last=False)[1][0])
        return evicted

    def pop(self, key: K) -> V | None:
        """Forget ``key``; its value (fresh or not), or ``None``."""
        found = self._entries.pop(key, None)
        return None if found is None else found[0]

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


class CachedLookup(Generic[K, V]):
    """``load(key)`` answered from memory for ``ttl()`` seconds, dropped by :meth:`forget`.

    ``ttl`` is read at every fill, so a module constant patched in a test or a
    bench applies at once. Concurrent misses each load (nothing is coalesced).
    """

    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        *,
        ttl: Callable[[], float],
        max_entries: int,
    ) -> None:
        self._load = load
        self._ttl = ttl
        # Values are boxed: a cached None ("no such record") is a hit, not a miss.
        self._cache: TtlCache[K, tuple[V]] = TtlCache(max_entries)
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._cache)

    async def get(self, key: K) -> V:
        """The cached value of ``key``, else the loaded one (kept unless forgotten meanwhile).

        Raises what ``load`` raises (nothing is cached then).
        """
        found = self._cache.get(key)
        if found is not None:
            return found[0]
        epoch = self._epoch
        value = await self._load(key)
        if epoch == self._epoch:  # no change arrived while reading: safe to keep
            self._cache.put(key, (value,), self._ttl())
        return value

    def forget(self, key: K | None = None) -> None:
        """Drop ``key`` (everything when ``None``); a read out meanwhile is not kept."""
        self._epoch += 1
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key)


class ChangeChannel:
    """A credential kind's invalidation channel: drop here, announce to the others, follow theirs.

    ``drop(id)`` forgets what this process caches of the record ``id`` (every
    record when ``None``). ``noun`` names the kind in the log line of an
    announcement that could not be published.
    """

    def __init__(
        self,
        shared: SharedState,
        channel: str,
        drop: Callable[[str | None], None],
        *,
        noun: str,
        log: logging.Logger,
    ) -> None:
        self.shared = shared
        self.channel = channel
        self._drop = drop
        self._noun = noun
        self._log = log

    async def changed(self, record_id: str) -> None:
        """``record_id`` changed: drop it here at once, then tell every other process."""
        self._drop(record_id)
        await self.announce(record_id)

    async def announce(self, record_id: str) -> None:
        """Publish ``record_id`` on the channel; a shared-state outage is logged, not raised.

        The change is stored already and the change feed carries it to every
        node within a second; the publication only makes it immediate.
        """
        try:
            await self.shared.publish(self.channel, record_id.encode())
        except SharedStateUnavailableError as error:
            self._log.warning(
                "could not publish invalidation of %s %s: %s", self._noun, record_id, error
            )

    async def follow(self, stop: asyncio.Event, *, backoff: float = 1.0) -> None:
        """Drop every record announced by another process until ``stop`` is set.

        When the subscription is lost everything is dropped (messages may have
        been missed) and it is opened again after ``backoff`` seconds.
        """
        await follow_invalidations(self.shared, self.channel, self._drop, stop, backoff=backoff)
