"""AIMD concurrency limit and risk registry: the arithmetic, on a fake clock."""

from __future__ import annotations

import pytest

from bastion.ratelimit.adaptive import AdaptiveConcurrency, LoadShedder, OverloadedError
from bastion.ratelimit.risk import RiskRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_sheds_beyond_the_limit() -> None:
    limiter = AdaptiveConcurrency(initial=3, maximum=10)
    assert [limiter.try_acquire() for _ in range(5)] == [True, True, True, False, False]
    assert (limiter.inflight, limiter.shed, limiter.max_inflight) == (3, 2, 3)


def test_slow_responses_cut_multiplicatively_once_per_target() -> None:
    clock = Clock()
    limiter = AdaptiveConcurrency(
        initial=20, minimum=2, target_latency=0.1, backoff=0.5, clock=clock
    )
    for _ in range(10):
        limiter.try_acquire()
    for _ in range(10):  # one slow wave: a single cut
        limiter.release(0.5)
    assert limiter.limit == 10
    clock.now += 0.2
    limiter.try_acquire()
    limiter.release(0.0, failed=True)  # a failure counts as slow
    assert limiter.limit == 5
    for _ in range(5):
        clock.now += 1
        limiter.try_acquire()
        limiter.release(1.0)
    assert limiter.limit == 2  # the floor


def test_fast_responses_grow_additively_only_when_used() -> None:
    limiter = AdaptiveConcurrency(initial=4, maximum=6, target_latency=0.1)
    limiter.try_acquire()
    limiter.release(0.01)  # 1 of 4 in use: an idle upstream says nothing
    assert limiter.limit == 4
    for _ in range(40):  # fully used and fast: about +1 per limit's worth of responses
        for _ in range(4):
            limiter.try_acquire()
        for _ in range(4):
            limiter.release(0.01)
    assert limiter.limit == 6  # the ceiling


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="need 1 <= minimum <= initial <= maximum, not 5/2/10"):
        AdaptiveConcurrency(initial=2, minimum=5, maximum=10)
    with pytest.raises(ValueError, match="backoff must be between 0 and 1, not 1"):
        AdaptiveConcurrency(backoff=1)


async def test_shedder_admits_then_refuses_with_503() -> None:
    shedder = LoadShedder(initial=1, minimum=1, maximum=1)
    async with shedder.admit("orders"):
        with pytest.raises(OverloadedError) as info:
            async with shedder.admit("orders"):
                pass
        assert (info.value.status, info.value.code, info.value.retry_after) == (
            503,
            "overloaded",
            1,
        )
        async with shedder.admit("billing"):  # per route
            pass
    assert shedder.for_route("orders").inflight == 0


def test_risk_flags_expire_and_keep_the_strongest() -> None:
    clock = Clock()
    risk = RiskRegistry(clock=clock)
    assert not risk
    assert risk.factor("ip", "203.0.113.9") == 1
    risk.flag("ip", "203.0.113.9", 4, clock.now + 60)
    risk.flag("ip", "203.0.113.9", 2, clock.now + 120)
    assert risk and risk.factor("ip", "203.0.113.9") == 4
    assert risk.factor("key", "203.0.113.9") == 1
    clock.now += 100
    assert risk.factor("ip", "203.0.113.9") == 4  # the longer of the two deadlines
    clock.now += 21
    assert risk.factor("ip", "203.0.113.9") == 1
    assert not risk
    with pytest.raises(ValueError, match="factor must be a whole number >= 2, not 1"):
        risk.flag("key", "k", 1, clock.now + 1)
    with pytest.raises(ValueError, match="until must be in the future"):
        risk.flag("key", "k", 2, clock.now)
