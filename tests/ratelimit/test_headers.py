"""IETF RateLimit-Policy / RateLimit / Retry-After values (draft-ietf-httpapi-ratelimit-headers)."""

from __future__ import annotations

import pytest

from bastion.ratelimit import (
    Decision,
    Limit,
    LimitState,
    Result,
    rate_limit_headers,
    ratelimit,
    ratelimit_policy,
    retry_after,
)


def _state(
    limit: Limit,
    *,
    allowed: bool = True,
    remaining: int = 0,
    reset: float = 0.0,
    retry: float = 0.0,
) -> LimitState:
    return LimitState("k", limit, Decision(allowed, 0, remaining, reset, retry))


def test_several_policies_in_one_list() -> None:
    result = Result(
        True,
        (
            _state(Limit.parse("100/minute", name="per-key"), remaining=42, reset=34.2),
            _state(Limit.parse("1000/day", burst=50), remaining=7, reset=0.0),
        ),
    )
    assert ratelimit_policy(result) == '"per-key";q=100;w=60, "1000/day";q=50;w=4320'
    assert ratelimit(result) == '"per-key";r=42;t=35, "1000/day";r=7;t=0'
    assert [name for name, _ in rate_limit_headers(result)] == ["RateLimit-Policy", "RateLimit"]


def test_retry_after_is_an_integer_rounded_up_and_at_least_one() -> None:
    limit = Limit.parse("1/second")
    assert retry_after(Result(False, (_state(limit, allowed=False, retry=0.0001),))) == "1"
    assert retry_after(Result(False, (_state(limit, allowed=False, retry=2.0000000001),))) == "2"
    assert retry_after(Result(False, (_state(limit, allowed=False, retry=2.3),))) == "3"
    # The largest wait of the refusing limits is the one that matters.
    both = Result(False, (_state(limit, retry=0.0), _state(limit, allowed=False, retry=9.5)))
    assert dict(rate_limit_headers(both))["Retry-After"] == "10"


def test_policy_names_are_sf_strings() -> None:
    limit = Limit.parse("1/second", name='a "quoted" \\ name')
    assert ratelimit_policy(Result(True, (_state(limit),))) == (
        '"a \\"quoted\\" \\\\ name";q=1;w=1'
    )
    with pytest.raises(ValueError, match=r"must be printable ASCII"):
        ratelimit_policy(Result(True, (_state(Limit.parse("1/second", name="caf\u00e9")),)))


def test_raw_fields_match_the_headers() -> None:
    from bastion.ratelimit.headers import rate_limit_fields

    result = Result(
        True, (_state(Limit.parse("100/minute", name="per-key"), remaining=42, reset=34.2),)
    )
    assert rate_limit_fields(result) == [
        (b"ratelimit-policy", b'"per-key";q=100;w=60'),
        (b"ratelimit", b'"per-key";r=42;t=35'),
    ]
    assert rate_limit_fields(Result(True, ())) == []


def test_policy_items_are_cached_per_limit_and_stay_correct() -> None:
    # The same limit rendered twice, with different states: only the policy is shared.
    limit = Limit.parse("10/second")
    first = Result(True, (_state(limit, remaining=9, reset=0.1),))
    second = Result(True, (_state(limit, remaining=3, reset=0.7),))
    assert ratelimit(first) == '"10/second";r=9;t=1'
    assert ratelimit(second) == '"10/second";r=3;t=1'
    assert ratelimit_policy(first) == ratelimit_policy(second) == '"10/second";q=10;w=1'
    with pytest.raises(ValueError, match="printable ASCII"):
        ratelimit_policy(Result(True, (_state(Limit.parse("1/second", name="caf\u00e9")),)))
