"""Rate limiting: GCRA limits, in-process and Redis backends, IETF RateLimit headers.

``Limit.parse("100/minute")`` builds a limit; a :class:`Limiter`
(:class:`MemoryLimiter` for one process, :class:`RedisLimiter` across nodes)
checks a request against several limits at once; :func:`rate_limit_headers` renders the result;
:func:`ip_bucket` is the canonical form every per-IP bucket counts by.
"""

from __future__ import annotations

from bastion.ratelimit.addresses import ip_bucket
from bastion.ratelimit.backends import (
    Check,
    Limiter,
    LimitState,
    MemoryLimiter,
    RedisLimiter,
    Result,
)
from bastion.ratelimit.gcra import Decision, Limit, decide
from bastion.ratelimit.headers import rate_limit_headers, ratelimit, ratelimit_policy, retry_after

__all__ = [
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
