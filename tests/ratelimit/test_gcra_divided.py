"""``Limit.divided`` past a bucket's bound: the furthest division within it, as the native core."""

from __future__ import annotations

import pytest

from bastion.ratelimit import Limit


def test_a_division_within_the_bound_is_exact() -> None:
    limit = Limit.parse("10/minute").divided(4)
    assert (limit.rate, limit.period, limit.capacity, limit.label) == (10, 240, 2, "10/minute")


def test_a_division_past_the_bound_stops_at_it() -> None:
    daily = Limit.parse("1/day")
    # One request per 8.64e10 µs; the bound (2**50 µs) holds 13,031 of them.
    most = daily.divided(13_031)
    assert (most.period, most.capacity) == (86_400 * 13_031, 1)
    with pytest.raises(ValueError, match="too large"):
        Limit(1, 86_400 * 13_032)
    for parts in (13_032, 20_000, 1_000 * 64):
        clamped = daily.divided(parts)
        assert (clamped.period, clamped.tolerance_us, clamped.label) == (
            most.period,
            most.tolerance_us,
            "1/day",
        )
    with pytest.raises(ValueError, match="positive integer"):
        daily.divided(0)
