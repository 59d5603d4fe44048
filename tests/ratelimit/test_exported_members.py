"""Pins bastion.ratelimit's public names: adding or removing one is a deliberate change."""

from __future__ import annotations

import bastion.ratelimit


def test_public_names_are_pinned() -> None:
    assert sorted(bastion.ratelimit.__all__) == [
        "Check",
        "Decision",
        "Limit",
        "LimitState",
        "Limiter",
        "MemoryLimiter",
        "RedisLimiter",
        "Result",
        "decide",
        "ip_bucket",
        "rate_limit_headers",
        "ratelimit",
        "ratelimit_policy",
        "retry_after",
    ]
    for name in bastion.ratelimit.__all__:
        assert getattr(bastion.ratelimit, name) is not None
