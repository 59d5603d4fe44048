"""Contract: the change feed on SQLite and PostgreSQL (``storage/feed.py``).

Every write of a followed table leaves exactly one feed row, in the same
transaction (a write that fails leaves none); the follower delivers new rows to
this process's subscribers, replays revocations, survives gaps and outages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from _support.waiting import wait_until_async
from bastion.storage import (
    ApiKey,
    Client,
    ClientSecret,
    ConflictError,
    Database,
    NotFoundError,
    SigningKey,
    feed,
)
from bastion.storage.errors import DatabaseUnavailableError
from bastion.storage.feed import Change, ChangeFeedFollower, FeedRow
from bastion.storage.models import utcnow
from bastion.storage.shared import MemorySharedState


async def _rows(db: Database) -> list[tuple[str, str]]:
    return [(r.channel, r.message) for r in await db.change_feed.read_after(0, limit=1000)]


def _key(n: int, now: datetime) -> ApiKey:
    return ApiKey(
        digest=f"{n:064x}", prefix=f"bk_live_{n:04d}", name=f"k{n}", created_at=now, updated_at=now
    )


async def test_every_followed_write_leaves_one_row(db: Database, now: datetime) -> None:
    key = await db.api_keys.create(_key(1, now))
    await db.api_keys.update(key.id, name="renamed")
    await db.api_keys.touch_last_used(key.id, now, "192.0.2.1")  # bookkeeping: not a change
    await db.api_keys.touch_last_used_many([(key.id, now + timedelta(seconds=1), None)])
    await db.api_keys.delete(key.id)
    await db.clients.create(Client(client_id="app"))
    secret = await db.clients.add_secret(ClientSecret(client_id="app", digest="a" * 64))
    await db.clients.set_secret_expiry(secret.id, now)
    await db.clients.delete_secret(secret.id)
    await db.clients.update("app", disabled=True)
    await db.settings.set("ratelimit.override.key.k1", {"limits": []})
    await db.settings.delete("ratelimit.override.key.k1")
    signing = SigningKey(
        kid="k-1",
        alg="ES256",
        state="active",
        public_jwk={"kty": "EC", "kid": "k-1"},
        private_key_sealed="sealed",
        created_at=now,
        activates_at=now,
    )
    await db.signing_keys.create(signing)
    await db.signing_keys.update("k-1", state="retired")
    await db.change_feed.append([Change(feed.REVOKED_TOKENS, "jti-1 1700000000")])

    assert await _rows(db) == [
        (feed.API_KEYS, key.id),
        (feed.API_KEYS, key.id),
        (feed.API_KEYS, key.id),
        (feed.CLIENTS, "app"),
        (feed.CLIENTS, "app"),
        (feed.CLIENTS, "app"),
        (feed.CLIENTS, "app"),
        (feed.CLIENTS, "app"),
        (feed.SETTINGS, "ratelimit.override.key.k1"),
        (feed.SETTINGS, "ratelimit.override.key.k1"),
        (feed.SIGNING_KEYS, "k-1"),
        (feed.SIGNING_KEYS, "k-1"),
        (feed.REVOKED_TOKENS, "jti-1 1700000000"),
    ]


async def test_a_failed_write_leaves_no_row(db: Database, now: datetime) -> None:
    key = await db.api_keys.create(_key(1, now))
    head = await db.change_feed.head()
    with pytest.raises(ConflictError):
        await db.api_keys.create(_key(1, now))
    with pytest.raises(NotFoundError):
        await db.api_keys.update("no-such-key", name="x")
    with pytest.raises(NotFoundError):
        await db.api_keys.delete("no-such-key")
    with pytest.raises(NotFoundError):
        await db.clients.add_secret(ClientSecret(client_id="nobody", digest="b" * 64))
    assert await db.change_feed.head() == head
    assert await db.api_keys.get(key.id) == key


async def test_follower_delivers_new_rows_to_local_subscribers(db: Database, now: datetime) -> None:
    await db.api_keys.create(_key(1, now))  # before start: concerns nobody on a fresh node
    shared = MemorySharedState()
    follower = ChangeFeedFollower(db.change_feed, shared)
    await follower.start()
    assert follower.healthy
    async with shared.subscribe(feed.API_KEYS) as keys, shared.subscribe(feed.SETTINGS) as sets:
        key = await db.api_keys.create(_key(2, now))
        await db.settings.set("x", 1)
        assert await follower.poll() == 2
        assert await follower.poll() == 0  # never twice
        assert await asyncio.wait_for(anext(keys), 1) == key.id.encode()
        assert await asyncio.wait_for(anext(sets), 1) == b"x"


async def test_revocations_are_applied_before_subscribers_hear(db: Database) -> None:
    shared = MemorySharedState()
    follower = ChangeFeedFollower(db.change_feed, shared)
    order: list[str] = []

    async def apply(message: str) -> None:
        order.append("applied " + message)

    follower.before_delivery(feed.REVOKED_TOKENS, apply)
    await db.change_feed.append([Change(feed.REVOKED_TOKENS, "old 1")])
    await follower.start()
    await follower.replay(
        feed.REVOKED_TOKENS,
        await db.change_feed.since(feed.REVOKED_TOKENS, utcnow() - timedelta(minutes=5)),
    )
    assert order == ["applied old 1"]
    async with shared.subscribe(feed.REVOKED_TOKENS) as revoked:
        await db.change_feed.append([Change(feed.REVOKED_TOKENS, "new 2")])
        await follower.poll()
        assert order == ["applied old 1", "applied new 2"]
        assert await asyncio.wait_for(anext(revoked), 1) == b"new 2"


async def test_prune_keeps_the_newest_row(db: Database) -> None:
    await db.change_feed.append([Change(feed.SETTINGS, "a"), Change(feed.SETTINGS, "b")])
    head = await db.change_feed.head()
    assert await db.change_feed.prune(utcnow() + timedelta(days=1)) == 1
    assert [r.message for r in await db.change_feed.read_after(0, limit=10)] == ["b"]
    assert await db.change_feed.head() == head
    await db.change_feed.append([Change(feed.SETTINGS, "c")])
    assert await db.change_feed.head() > head  # ids are never handed out twice


# -- the follower's logic on a scripted store ------------------------------------------------


class _Store:
    """A feed whose rows become visible when a test says so (out of id order, like PostgreSQL)."""

    def __init__(self) -> None:
        self.visible: dict[int, FeedRow] = {}
        self.failing = False

    def commit(self, row_id: int, message: str) -> None:
        self.visible[row_id] = FeedRow(row_id, feed.API_KEYS, message, utcnow())

    async def head(self) -> int:
        self._check()
        return max(self.visible, default=0)

    async def read_after(self, after: int, *, limit: int) -> Sequence[FeedRow]:
        self._check()
        return [self.visible[i] for i in sorted(self.visible) if i > after][:limit]

    async def read_ids(self, ids: Sequence[int]) -> Sequence[FeedRow]:
        self._check()
        return [self.visible[i] for i in ids if i in self.visible]

    async def prune(self, before: datetime) -> int:
        return 0

    def _check(self) -> None:
        if self.failing:
            raise DatabaseUnavailableError("database unavailable")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _drain(subscription: object, most: int = 100) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < most:
        try:
            out.append(await asyncio.wait_for(anext(subscription), 0.05))  # type: ignore[call-overload]
        except TimeoutError:
            break
    return out


async def test_a_row_committed_late_below_a_seen_id_is_still_delivered() -> None:
    store, clock, shared = _Store(), _Clock(), MemorySharedState()
    follower = ChangeFeedFollower(store, shared, clock=clock)
    await follower.start()
    async with shared.subscribe(feed.API_KEYS) as subscription:
        store.commit(2, "second")  # id 1's transaction has not committed yet
        await follower.poll()
        store.commit(1, "first")
        clock.now += 5
        await follower.poll()
        store.commit(3, "third")
        await follower.poll()
        assert await _drain(subscription) == [b"second", b"first", b"third"]


async def test_a_gap_that_never_fills_is_given_up_after_the_timeout() -> None:
    store, clock, shared = _Store(), _Clock(), MemorySharedState()
    follower = ChangeFeedFollower(store, shared, clock=clock)
    await follower.start()
    store.commit(2, "after-a-rollback")
    await follower.poll()
    assert follower._gaps == {1: clock.now}
    clock.now += feed.GAP_TIMEOUT
    await follower.poll()
    assert follower._gaps == {} and follower._floor == 2 and follower._seen == set()


async def test_an_unreadable_feed_makes_caches_drop_everything_until_it_is_back() -> None:
    store, clock, shared = _Store(), _Clock(), MemorySharedState()
    follower = ChangeFeedFollower(store, shared, clock=clock, interval=0.01, stale_after=2.0)
    await follower.start()
    stop = asyncio.Event()
    async with shared.subscribe(feed.API_KEYS) as subscription:
        store.failing = True
        clock.now += 3  # the last good read is older than stale_after
        task = asyncio.create_task(follower.run(stop))
        await wait_until_async(lambda: not follower.healthy, "the follower turning unhealthy")
        # Every round while unreadable: "drop everything" (an empty message) to every cache.
        dropped = await _drain(subscription, most=3)
        assert dropped == [b"", b"", b""]
        store.failing = False
        store.commit(1, "k")
        await wait_until_async(lambda: follower.healthy, "the follower turning healthy again")
        stop.set()
        await task
        assert (await _drain(subscription))[-1:] == [b"k"]
