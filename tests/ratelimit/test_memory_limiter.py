"""The in-process limiter: exact sequentially and under asyncio concurrency, all or nothing."""

from __future__ import annotations

import asyncio

import pytest

from bastion.ratelimit import Limit, MemoryLimiter, rate_limit_headers

S = 1_000_000


class Clock:
    """A settable clock in microseconds."""

    def __init__(self) -> None:
        self.now = 1_700_000_000 * S

    def __call__(self) -> int:
        return self.now


async def test_sequential_exactly_n_then_refused_with_headers() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    limit = Limit.parse("3/minute")
    for _period in range(3):
        for i in range(3):
            result = await limiter.check([("key:a", limit)])
            assert result.allowed
            assert rate_limit_headers(result) == [
                ("RateLimit-Policy", '"3/minute";q=3;w=60'),
                ("RateLimit", f'"3/minute";r={2 - i};t={20 * (i + 1)}'),
            ]
        refused = await limiter.check([("key:a", limit)])
        assert not refused.allowed
        assert refused.retry_after == 20.0
        assert rate_limit_headers(refused) == [
            ("RateLimit-Policy", '"3/minute";q=3;w=60'),
            ("RateLimit", '"3/minute";r=0;t=60'),
            ("Retry-After", "20"),
        ]
        clock.now += 60 * S


async def test_concurrent_checks_admit_exactly_n() -> None:
    limiter = MemoryLimiter()
    limit = Limit.parse("100/hour")

    async def one() -> bool:
        await asyncio.sleep(0)
        return (await limiter.check([("key:hot", limit)])).allowed

    results = await asyncio.gather(*(one() for _ in range(1000)))
    assert sum(results) == 100


async def test_refused_request_consumes_nothing() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    tight, loose = Limit.parse("2/minute", name="key"), Limit.parse("10/minute", name="ip")
    checks = [("key:a", tight), ("ip:1", loose)]
    assert (await limiter.check(checks)).allowed
    assert (await limiter.check(checks)).allowed
    for _ in range(5):
        refused = await limiter.check(checks)
        assert not refused.allowed
        # The loose limit reports its unchanged state: 2 used, 8 left.
        assert [s.decision.remaining for s in refused.states] == [0, 8]
        assert [s.decision.allowed for s in refused.states] == [False, True]
    assert rate_limit_headers(refused)[1] == ("RateLimit", '"key";r=0;t=60, "ip";r=8;t=12')
    admitted = [(await limiter.check([("ip:1", loose)])).allowed for _ in range(9)]
    assert admitted == [True] * 8 + [False]


async def test_cost_zero_peeks() -> None:
    limiter = MemoryLimiter(clock=Clock())
    limit = Limit.parse("5/minute")
    await limiter.check([("k", limit)], cost=2)
    peek = await limiter.check([("k", limit)], cost=0)
    assert peek.allowed and peek.remaining == 3
    assert (await limiter.check([("k", limit)], cost=3)).allowed
    assert not (await limiter.check([("k", limit)])).allowed


async def test_expired_keys_are_swept() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock=clock)
    limit = Limit.parse("1/second")
    for i in range(5000):
        await limiter.check([(f"ip:{i}", limit)])
    assert len(limiter) == 5000
    clock.now += 2 * S
    for _ in range(5000):
        await limiter.check([("ip:live", limit)])
    assert len(limiter) == 1


async def test_invalid_checks() -> None:
    limiter = MemoryLimiter()
    limit = Limit.parse("1/second")
    with pytest.raises(ValueError) as info:
        await limiter.check([("k", limit), ("k", limit)])
    assert str(info.value) == "each limit of a request needs its own key, got ['k', 'k']"
    with pytest.raises(ValueError, match=r"^cost must be a non-negative integer, not -2$"):
        await limiter.check([("k", limit)], cost=-2)
    empty = await limiter.check([])
    assert empty.allowed and empty.states == () and rate_limit_headers(empty) == []
