"""GCRA: limit parsing and the exactness of decide() on integer microseconds."""

from __future__ import annotations

import pytest

from bastion.ratelimit import Decision, Limit, decide

S = 1_000_000  # microseconds per second
T0 = 1_700_000_000 * S  # a realistic wall-clock instant, where float TATs would drift


@pytest.mark.parametrize(
    ("text", "rate", "period"),
    [
        ("100/minute", 100, 60.0),
        ("5/second", 5, 1.0),
        ("1/day", 1, 86400.0),
        ("10/hours", 10, 3600.0),
        (" 3 / Minute ", 3, 60.0),
        ("2/seconds", 2, 1.0),
        # Short units, singular or plural (issue 13).
        ("5/s", 5, 1.0),
        ("5/sec", 5, 1.0),
        ("5/secs", 5, 1.0),
        ("10/m", 10, 60.0),
        ("10/min", 10, 60.0),
        ("10/mins", 10, 60.0),
        ("10/minutes", 10, 60.0),
        ("7/h", 7, 3600.0),
        ("7/hours", 7, 3600.0),
        ("1/d", 1, 86400.0),
        ("2/days", 2, 86400.0),
    ],
)
def test_parse(text: str, rate: int, period: float) -> None:
    limit = Limit.parse(text)
    assert (limit.rate, limit.period, limit.burst, limit.capacity) == (rate, period, rate, rate)


def test_parse_with_burst_and_name() -> None:
    limit = Limit.parse("100/minute", burst=10, name="per-key")
    assert (limit.rate, limit.burst, limit.label) == (100, 10, "per-key")
    assert limit.interval_us == 600_000
    assert limit.tolerance_us == 6_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "100",
            "invalid rate limit '100': expected '<count>/<unit>' such as '100/minute' "
            "(units: second, minute, hour, day)",
        ),
        (
            "1.5/second",
            "invalid rate limit '1.5/second': expected '<count>/<unit>' such as '100/minute' "
            "(units: second, minute, hour, day)",
        ),
        (
            "-1/second",
            "invalid rate limit '-1/second': expected '<count>/<unit>' such as '100/minute' "
            "(units: second, minute, hour, day)",
        ),
        (
            "100/week",
            "invalid rate limit '100/week': unknown unit 'week' (use second, minute, hour or day)",
        ),
        ("0/minute", "invalid rate limit '0/minute': the count must be at least 1"),
        # Not minutes, not hours: a plural of a one-letter unit is no unit.
        ("5/ms", "invalid rate limit '5/ms': unknown unit 'ms' (use second, minute, hour or day)"),
        ("5/hs", "invalid rate limit '5/hs': unknown unit 'hs' (use second, minute, hour or day)"),
        ("5/ss", "invalid rate limit '5/ss': unknown unit 'ss' (use second, minute, hour or day)"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Limit.parse(text)
    assert str(info.value) == message


def test_invalid_limits() -> None:
    with pytest.raises(ValueError, match=r"^burst must be a positive integer, not 0$"):
        Limit.parse("10/second", burst=0)
    with pytest.raises(ValueError, match=r"^rate must be a positive integer, not 0$"):
        Limit(0, 1.0)
    with pytest.raises(ValueError, match=r"^period must be a positive number of seconds, not 0$"):
        Limit(1, 0)
    with pytest.raises(ValueError) as info:
        Limit.parse("10000000/second")
    assert str(info.value) == (
        "10000000 per 1s is too fast: at most one request per microsecond can be limited"
    )


def test_label() -> None:
    assert Limit.parse("100/minute").label == "100/minute"
    assert Limit(7, 90).label == "7/90s"


@pytest.mark.parametrize("rate", [1, 2, 3, 7, 10, 13, 60, 97, 100, 999, 1000])
@pytest.mark.parametrize("period", [1, 60, 90, 3600, 86400])
def test_same_instant_admits_exactly_burst(rate: int, period: int) -> None:
    limit = Limit(rate, period)
    tat: int | None = None
    admitted = 0
    for _ in range(rate + 5):
        decision = decide(tat, T0, limit)
        if decision.allowed:
            admitted += 1
        tat = decision.new_tat
    assert admitted == rate


def test_sequence_remaining_and_retry_after() -> None:
    limit = Limit.parse("10/second")
    tat = T0  # a TAT at "now" is the same as an unseen key
    for expected_remaining in range(9, -1, -1):
        decision = decide(tat, T0, limit)
        assert decision.allowed
        assert decision.remaining == expected_remaining
        assert decision.retry_after == 0.0
        tat = decision.new_tat
    assert decision.reset_after == 1.0
    refused = decide(tat, T0, limit)
    assert refused == Decision(
        allowed=False, new_tat=tat, remaining=0, reset_after=1.0, retry_after=0.1
    )
    # One interval later exactly one more request is admitted.
    later = decide(tat, T0 + S // 10, limit)
    assert later.allowed and later.remaining == 0
    assert not decide(later.new_tat, T0 + S // 10, limit).allowed
    # After a full period the bucket is full again; an old TAT is like no TAT.
    assert decide(tat, T0 + S, limit) == decide(None, T0 + S, limit)
    assert decide(tat, T0 + S, limit).remaining == 9


def test_burst_smaller_than_rate() -> None:
    limit = Limit(10, 1, burst=2)
    first = decide(None, T0, limit)
    second = decide(first.new_tat, T0, limit)
    third = decide(second.new_tat, T0, limit)
    assert (first.allowed, second.allowed, third.allowed) == (True, True, False)
    assert third.retry_after == 0.1


def test_cost() -> None:
    limit = Limit(5, 1)
    first = decide(None, T0, limit, cost=3)
    assert (first.allowed, first.remaining) == (True, 2)
    second = decide(first.new_tat, T0, limit, cost=3)
    assert (second.allowed, second.remaining, second.new_tat) == (False, 2, first.new_tat)
    assert second.retry_after == pytest.approx(0.2)
    peek = decide(first.new_tat, T0, limit, cost=0)
    assert (peek.allowed, peek.remaining, peek.new_tat) == (True, 2, first.new_tat)
    with pytest.raises(ValueError, match=r"^cost must be a non-negative integer, not -1$"):
        decide(None, T0, limit, cost=-1)


def test_divided() -> None:
    limit = Limit.parse("100/minute", burst=10)
    half = limit.divided(3)
    assert (half.rate, half.period, half.burst, half.label) == (100, 180.0, 3, "100/minute")
    assert limit.divided(1) is limit
    assert Limit.parse("1/second").divided(4).burst == 1
    with pytest.raises(ValueError, match=r"^node count must be a positive integer, not 0$"):
        limit.divided(0)
