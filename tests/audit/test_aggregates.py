"""Per-minute traffic counts of allowed gateway requests."""

from __future__ import annotations

from datetime import UTC, datetime

from bastion.audit.aggregates import MinuteCount, TrafficCounter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_per_route_and_principal_close_with_the_minute() -> None:
    clock = Clock(1_800_000_000.0)  # 2027-01-15T08:00:00Z, a minute boundary
    counter = TrafficCounter(clock)
    for _ in range(3):
        counter.hit("orders", "key", "k1")
    counter.hit("orders", "client", "c1")
    counter.hit("health", "anonymous", None)
    assert counter.take_closed() == []  # the minute is still running
    clock.now += 61
    counter.hit("orders", "key", "k1")  # the next minute
    minute = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    key = lambda c: (c.route, c.principal)  # noqa: E731
    assert sorted(counter.take_closed(), key=key) == [
        MinuteCount(minute, "health", "anonymous", None, 1),
        MinuteCount(minute, "orders", "client", "c1", 1),
        MinuteCount(minute, "orders", "key", "k1", 3),
    ]
    assert counter.take_closed() == []
    assert counter.take_all() == [
        MinuteCount(datetime(2027, 1, 15, 8, 1, tzinfo=UTC), "orders", "key", "k1", 1)
    ]
    assert counter.take_all() == []


def test_an_idle_minute_closes_without_a_hit() -> None:
    clock = Clock(1_800_000_000.0)
    counter = TrafficCounter(clock)
    counter.hit("r", "subject", "alice")
    clock.now += 300
    (count,) = counter.take_closed()
    assert (count.route, count.principal_id, count.count) == ("r", "alice", 1)
