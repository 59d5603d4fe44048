"""The change feed: how a change made anywhere reaches every running node within a second.

Every change to something a node caches — API keys, clients and their
secrets, signing keys, runtime settings (rate-limit overrides), access-token
revocations — is written to the ``change_feed`` table **in the same
transaction as the change itself** (the SQL repositories do it, see
``feed_channel`` in ``storage/sql/repositories.py``), as a row
``(id, channel, message)``. So a change committed by any process — a server
node, the ``bastion`` CLI, a migration script — is never lost to the other
nodes, and never announced without having happened.

Every node runs one :class:`ChangeFeedFollower`. It polls the table by its
primary key every ``interval`` (250 ms by default; an indexed range read that
returns nothing almost every time) and hands each new row to this process's
subscribers of the row's channel through
:meth:`~bastion.storage.shared.SharedState.deliver_local` — the same
subscriptions the caches already follow. With Redis as the shared state the
writers also publish on the channel, which reaches every node at once; the
poll then closes any gap (a node that was restarting, a dropped connection).
Messages are idempotent invalidations, so a message arriving twice is harmless.

Ids are assigned when a row is inserted but become visible when its
transaction commits, so on PostgreSQL a lower id can appear after a higher
one. The follower therefore re-reads the ids above the highest *contiguous*
id it has seen, and gives up on a missing id (a rolled-back transaction)
after :data:`GAP_TIMEOUT` seconds.

Failing safe: :attr:`ChangeFeedFollower.healthy` is false from start-up until
the first successful poll, and whenever the last successful poll is older than
``stale_after``. Caches of revocable things consult it and stop trusting
their entries meanwhile (they read through to the database, which fails closed
if it is the database that is down). When the feed comes back every
subscriber is told to drop everything (an empty message), since rows may have
been pruned meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from bastion.storage.errors import ChangeFeedStaleError
from bastion.storage.models import utcnow
from bastion.storage.shared import SharedState

log = logging.getLogger("bastion.storage.feed")

# The channels. Services import these names; storage writes them.
API_KEYS: Final = "api-keys"
"""Message: the id of an API key that was created, changed or deleted."""
CLIENTS: Final = "clients"
"""Message: the id of an OAuth client whose record or secrets changed."""
SIGNING_KEYS: Final = "signing-keys"
"""Message: the kid of a signing key that was created or changed state."""
SETTINGS: Final = "settings"
"""Message: the key of a runtime setting (``settings_kv``) that was set or deleted."""
REVOKED_TOKENS: Final = "revoked-tokens"
"""Message: ``"<jti> <exp>"`` of a revoked access token (``exp`` in Unix seconds)."""
USERS: Final = "users"
"""Message: the id of a user who was created, changed (disabled, enabled, password) or deleted."""

SESSIONS: Final = "sessions"
"""Message: the ``id_digest`` of a browser session that started or ended (``interaction/``)."""

CHANNELS: Final = (API_KEYS, CLIENTS, SIGNING_KEYS, SETTINGS, REVOKED_TOKENS, USERS, SESSIONS)

MAX_MESSAGE: Final = 512
"""The longest message a row holds (the column's size)."""

DEFAULT_INTERVAL: Final = 0.25
DEFAULT_STALE_AFTER: Final = 2.0
GAP_TIMEOUT: Final = 10.0
"""Seconds a missing id is waited for before it is taken for a rolled-back transaction."""
BATCH: Final = 500
DEFAULT_RETENTION: Final = 86_400.0
PRUNE_EVERY: Final = 600.0


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the feed: ``message`` announced on ``channel``."""

    channel: str
    message: str

    def __post_init__(self) -> None:
        if not self.channel or len(self.channel) > 64:
            raise ValueError(f"change feed channel {self.channel!r} must have 1-64 characters")
        if len(self.message) > MAX_MESSAGE:
            raise ValueError(f"change feed message longer than {MAX_MESSAGE} characters")


@dataclass(frozen=True, slots=True)
class FeedRow:
    """A change as stored: its id (the feed's order) and when it was written."""

    id: int
    channel: str
    message: str
    created_at: datetime


class ChangeFeedStore(Protocol):
    """What the follower needs from storage (``Database.change_feed``)."""

    async def head(self) -> int: ...

    async def read_after(self, after: int, *, limit: int) -> Sequence[FeedRow]: ...

    async def read_ids(self, ids: Sequence[int]) -> Sequence[FeedRow]: ...

    async def prune(self, before: datetime) -> int: ...


Applier = Callable[[str], Awaitable[None]]


class ChangeFeedFollower:
    """Follows the feed on one node and delivers its rows to this process's subscribers.

    :meth:`start` positions it at the current end of the feed (a starting
    node's caches are empty: older rows concern nobody here — except token
    revocations, which :meth:`replay` re-applies). :meth:`run` polls until
    stopped and never raises for database outages.
    """

    def __init__(
        self,
        store: ChangeFeedStore,
        shared: SharedState,
        *,
        interval: float = DEFAULT_INTERVAL,
        stale_after: float = DEFAULT_STALE_AFTER,
        retention: float = DEFAULT_RETENTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or stale_after <= interval:
            raise ValueError("change feed: need 0 < interval < stale_after")
        self._store = store
        self._shared = shared
        self.interval = interval
        self.stale_after = stale_after
        self.retention = retention
        self._clock = clock
        self._floor: int | None = None  # every id <= floor was seen (or given up on)
        self._seen: set[int] = set()  # ids above the floor already delivered
        self._gaps: dict[int, float] = {}  # missing id -> when it was first noticed
        self._last_ok: float | None = None
        self._appliers: dict[str, list[Applier]] = {}
        self._was_healthy = False
        self._last_prune = clock()
        self.delivered = 0

    # -- what caches ask ------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """Whether the feed was read successfully within the last ``stale_after`` seconds."""
        return self._last_ok is not None and self._clock() - self._last_ok < self.stale_after

    @property
    def last_read_age(self) -> float:
        """Seconds since the last successful read (``inf`` before the first)."""
        return math.inf if self._last_ok is None else self._clock() - self._last_ok

    async def check(self) -> None:
        """Raise :class:`ChangeFeedStaleError` unless :attr:`healthy` (the readiness probe)."""
        if not self.healthy:
            raise ChangeFeedStaleError(
                f"change feed not read for over {self.stale_after:g} s "
                "(changes made elsewhere may not be applied here)"
            )

    def before_delivery(self, channel: str, apply: Applier) -> None:
        """Await ``apply(message)`` for each row of ``channel`` before its subscribers hear of it.

        For state a message must change before any cache drops its entry — a
        revoked token's deny-list entry in in-process shared state, so that the
        re-verification a dropped cache entry causes already refuses it.
        """
        self._appliers.setdefault(channel, []).append(apply)

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Position at the end of the feed; raises the store's errors (database down)."""
        self._floor = await self._store.head()
        self._seen.clear()
        self._gaps.clear()
        self._last_ok = self._clock()
        self._was_healthy = True

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``interval`` until ``stop`` is set; outages are logged and retried."""
        failing = False
        while not stop.is_set():
            try:
                await self.poll()  # positions itself first when start() has not run or failed
                if failing:
                    log.warning("change feed readable again")
                    failing = False
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not failing:
                    log.warning("change feed unreadable (%s); caches stop trusting entries", error)
                    failing = True
            if not self.healthy:
                # Fail safe: while changes may go unheard, no cache keeps an entry for
                # longer than one round (they refill from the database, or fail closed).
                self._was_healthy = False
                self._deliver_everything()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            await self._maybe_prune()

    async def poll(self) -> int:
        """Read and deliver the rows not seen yet; return how many were delivered."""
        if self._floor is None:
            await self.start()
        floor = self._floor
        assert floor is not None
        rows = list(await self._store.read_after(max(self._seen, default=floor), limit=BATCH))
        if self._gaps:
            # Ids seen missing: transactions that had not committed yet (or rolled back).
            rows.extend(await self._store.read_ids(sorted(self._gaps)[:BATCH]))
            rows.sort(key=lambda row: row.id)
        if not self._was_healthy:
            # Rows may have been pruned while the feed was unreadable: drop everything.
            self._deliver_everything()
            self._was_healthy = True
        delivered = 0
        for row in rows:
            if row.id in self._seen:
                continue
            await self._deliver(row)
            self._seen.add(row.id)
            self._gaps.pop(row.id, None)
            delivered += 1
        self._advance(rows)
        self._last_ok = self._clock()
        self.delivered += delivered
        return delivered

    async def replay(self, channel: str, rows: Sequence[FeedRow]) -> None:
        """Run ``channel``'s appliers over ``rows`` read at start-up (no subscriber is told)."""
        for row in rows:
            if row.channel == channel:
                for apply in self._appliers.get(channel, ()):
                    await apply(row.message)

    # -- internals ------------------------------------------------------------

    async def _deliver(self, row: FeedRow) -> None:
        for apply in self._appliers.get(row.channel, ()):
            try:
                await apply(row.message)
            except Exception as error:
                # Still tell the subscribers; they drop their entry and re-check.
                log.warning("change feed: applying %s message failed: %s", row.channel, error)
        self._shared.deliver_local(row.channel, row.message.encode())

    def _deliver_everything(self) -> None:
        for channel in CHANNELS:
            self._shared.deliver_local(channel, b"")

    def _advance(self, rows: Sequence[FeedRow]) -> None:
        floor = self._floor
        assert floor is not None
        now = self._clock()
        if rows:
            highest = max(max(self._seen, default=floor), rows[-1].id)
            for missing in range(floor + 1, highest):
                if missing not in self._seen and missing not in self._gaps:
                    self._gaps[missing] = now
        while True:
            nxt = floor + 1
            if nxt in self._seen:
                self._seen.discard(nxt)
                floor = nxt
            elif nxt in self._gaps and now - self._gaps[nxt] >= GAP_TIMEOUT:
                del self._gaps[nxt]
                floor = nxt
            else:
                break
        self._floor = floor

    async def _maybe_prune(self) -> None:
        now = self._clock()
        if now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        before = utcnow() - timedelta(seconds=self.retention)
        try:
            pruned = await self._store.prune(before)
        except Exception as error:
            log.warning("change feed: pruning failed (will retry): %s", error)
            return
        if pruned:
            log.info("change feed: pruned %d rows older than %s", pruned, before.isoformat())


__all__ = [
    "API_KEYS",
    "CHANNELS",
    "CLIENTS",
    "REVOKED_TOKENS",
    "SETTINGS",
    "SIGNING_KEYS",
    "USERS",
    "Change",
    "ChangeFeedFollower",
    "ChangeFeedStore",
    "FeedRow",
]
