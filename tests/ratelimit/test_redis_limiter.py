"""The Redis limiter against a real Redis: exact under concurrency and across nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio

from bastion.ratelimit import Limit, RedisLimiter, rate_limit_headers
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import RedisSharedState

pytestmark = pytest.mark.redis

DOWN_URL = "redis://127.0.0.1:1/0"

OpenLimiter = Callable[[], Awaitable[RedisLimiter]]


@pytest.fixture
async def open_limiter(redis_url: str, redis_prefix: str) -> AsyncIterator[OpenLimiter]:
    """Open limiters as separate "nodes" (own client and pool) on one Redis and prefix."""
    states: list[RedisSharedState] = []

    async def factory() -> RedisLimiter:
        state = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
        states.append(state)
        return RedisLimiter(state)

    yield factory
    for state in states:
        await state.close()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=redis_prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def limiter(open_limiter: OpenLimiter) -> RedisLimiter:
    return await open_limiter()


async def test_sequential_exactly_n_then_refused_with_headers(limiter: RedisLimiter) -> None:
    limit = Limit.parse("5/hour")
    for i in range(5):
        result = await limiter.check([("key:a", limit)])
        assert result.allowed
        policy, state = rate_limit_headers(result)
        assert policy == ("RateLimit-Policy", '"5/hour";q=5;w=3600')
        # t is the seconds until the bucket is full again: i+1 intervals of 720 s.
        assert state == ("RateLimit", f'"5/hour";r={4 - i};t={720 * (i + 1)}')
    for _ in range(3):
        refused = await limiter.check([("key:a", limit)])
        assert not refused.allowed
        headers = dict(rate_limit_headers(refused))
        assert headers["RateLimit"] == '"5/hour";r=0;t=3600'
        # 720 s minus the few milliseconds since the first request, rounded up.
        assert headers["Retry-After"] == "720"


async def test_concurrent_checks_admit_exactly_n(limiter: RedisLimiter) -> None:
    limit = Limit.parse("50/hour")
    results = await asyncio.gather(*(limiter.check([("key:hot", limit)]) for _ in range(500)))
    assert sum(r.allowed for r in results) == 50


async def test_two_nodes_share_the_budget_exactly(open_limiter: OpenLimiter) -> None:
    nodes = [await open_limiter(), await open_limiter()]
    limit = Limit.parse("40/hour")
    # Each node draws from the bucket first (which of them wins a concurrent burst is up
    # to the scheduler), then both hammer it at once: exactly 40 in all, then none anywhere.
    first = [await node.check([("key:shared", limit)]) for node in nodes]
    assert [r.allowed for r in first] == [True, True]
    results = await asyncio.gather(
        *(nodes[i % 2].check([("key:shared", limit)]) for i in range(400))
    )
    assert sum(r.allowed for r in results) == 38
    assert [(await node.check([("key:shared", limit)])).allowed for node in nodes] == [False] * 2


async def test_refused_request_consumes_nothing(limiter: RedisLimiter) -> None:
    tight, loose = Limit.parse("2/hour", name="key"), Limit.parse("10/hour", name="ip")
    checks = [("key:a", tight), ("ip:1", loose)]
    assert (await limiter.check(checks)).allowed
    assert (await limiter.check(checks)).allowed
    for _ in range(5):
        refused = await limiter.check(checks)
        assert not refused.allowed
        assert [s.decision.remaining for s in refused.states] == [0, 8]
    admitted = [(await limiter.check([("ip:1", loose)])).allowed for _ in range(9)]
    assert admitted == [True] * 8 + [False]


async def test_keys_expire_when_the_bucket_is_full_again(
    limiter: RedisLimiter, redis_url: str
) -> None:
    limit = Limit.parse("10/second")
    await limiter.check([("key:ttl", limit)], cost=3)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        pttl = await client.pttl(limiter.redis_key("key:ttl"))
        assert 0 < pttl <= 300
        # A refused or cost-0 check writes nothing.
        await limiter.check([("key:none", limit)], cost=0)
        assert await client.exists(limiter.redis_key("key:none")) == 0
    finally:
        await client.aclose()


async def test_script_reloaded_after_script_flush(limiter: RedisLimiter, redis_url: str) -> None:
    limit = Limit.parse("3/hour")
    assert (await limiter.check([("key:f", limit)])).allowed
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    result = await limiter.check([("key:f", limit)])
    assert result.allowed and result.remaining == 1


@pytest.fixture
async def down_limiter() -> AsyncIterator[RedisLimiter]:
    """A limiter on a Redis nobody listens on (not pinged, so it can be built)."""
    client = redis.asyncio.Redis.from_url(DOWN_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    state = RedisSharedState(client, url=DOWN_URL)
    yield RedisLimiter(state)
    await state.close()


async def test_redis_down_raises_quickly(down_limiter: RedisLimiter) -> None:
    limiter = down_limiter
    started = time.monotonic()
    with pytest.raises(SharedStateUnavailableError) as info:
        await limiter.check([("key:a", Limit.parse("1/second"))])
    assert time.monotonic() - started < 2.0
    assert info.value.code == "shared_state_unavailable"
    assert info.value.status == 503
    assert str(info.value).startswith(
        "Redis at redis://127.0.0.1:1/0 is unavailable (rate limit script): "
    )
    with pytest.raises(SharedStateUnavailableError):
        await RedisSharedState.connect(DOWN_URL, connect_timeout=0.5)
