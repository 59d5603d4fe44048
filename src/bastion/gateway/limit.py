"""The rate-limit refusals of a gateway route (the native core applies the limits).

Each route limit (``limits`` in the route settings) draws from the bucket
``"<route>:<per>:<value>"``, where the value is the request's API key id,
subject, OAuth client id, client IP (canonical: :func:`~bastion.ratelimit.ip_bucket`,
an IPv6 client by its /64) or the route name. A limit whose value the
request lacks (a JWT on a route limited per key) does not apply to it. A
refused request raises :class:`RateLimitedError` (429) and never reaches the
upstream; an admitted one gets ``RateLimit`` / ``RateLimit-Policy`` headers on
its response. The native core (``native/src/limit``) decides and renders these; the
control plane keeps the errors for what it renders itself and for the tests.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from bastion.errors import ServiceUnavailableError
from bastion.gateway.errors import GatewayError
from bastion.ratelimit import Result, rate_limit_headers

__all__ = [
    "RateLimitedError",
    "RateLimiterUnavailableError",
]

logger = logging.getLogger("bastion.gateway")

Per = Literal["key", "subject", "client", "ip", "route"]

# Upstream copies of our headers are dropped: the client must see bastion's only.
_OURS = frozenset({b"ratelimit", b"ratelimit-policy"})


class RateLimitedError(GatewayError):
    """A limit of the route refused the request (429); nothing was consumed.

    ``retry_after`` is the integer number of seconds to wait (rendered as
    ``Retry-After``); ``headers`` holds the other response headers of the
    refusal, ``RateLimit-Policy`` and ``RateLimit``, as ``(name, value)`` pairs.
    """

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, result: Result, **extra: Any) -> None:
        headers = rate_limit_headers(result)
        self.retry_after = int(dict(headers).get("Retry-After", "1"))
        self.headers: list[tuple[str, str]] = [h for h in headers if h[0] != "Retry-After"]
        super().__init__(detail, **extra)


class RateLimiterUnavailableError(GatewayError, ServiceUnavailableError):
    """The shared limiter is unreachable and a limit of the route fails closed (503).

    A ServiceUnavailableError too: an expected outage answer, not a bug to log with a
    traceback per request (the outage itself is logged and audited once).
    """

    code = "rate_limiter_unavailable"
    status = 503
    title = "Service unavailable"
    retry_after = 1
