"""The ``limit`` step: a route's rate limits, checked together in one limiter call.

Each route limit (``limits`` in the route settings) draws from the bucket
``"<route>:<per>:<value>"``, where the value is the request's API key id,
subject, OAuth client id, client IP (canonical: :func:`~bastion.ratelimit.ip_bucket`,
an IPv6 client by its /64) or the route name. A limit whose value the
request lacks (a JWT on a route limited per key) does not apply to it. A
refused request raises :class:`RateLimitedError` (429) and never reaches the
upstream; an admitted one gets ``RateLimit`` / ``RateLimit-Policy`` headers on
its response.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from bastion.errors import ServiceUnavailableError
from bastion.gateway.errors import GatewayConfigError, GatewayError
from bastion.gateway.forwarded import client_ip
from bastion.ratelimit import Check, Limit, Result, ip_bucket, rate_limit_headers
from bastion.ratelimit.headers import rate_limit_fields
from bastion.ratelimit.keys import key_checks
from bastion.storage.errors import SharedStateUnavailableError

if TYPE_CHECKING:
    from bastion.gateway.authn.identity import Identity
    from bastion.gateway.matcher import CompiledRoute
    from bastion.gateway.pipeline import Exchange, Gateway

__all__ = [
    "RateLimitedError",
    "RateLimiterUnavailableError",
    "RouteLimitRule",
    "compile_limits",
    "limit",
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


@dataclass(frozen=True, slots=True)
class RouteLimitRule:
    """One compiled route limit: whose bucket (``per``), its bucket key prefix and limit."""

    per: Per
    prefix: str  # "<route>:<per>:" (with "#<n>" after per when a route repeats it)
    limit: Limit
    fail: Literal["open", "closed"]


def compile_limits(route: CompiledRoute) -> tuple[RouteLimitRule, ...]:
    """The rules of ``route``'s ``limits`` setting (none when the route has no such setting).

    Raises GatewayConfigError naming the entry when a limit is invalid.
    """
    entries: Iterable[Any] = getattr(route.settings, "limits", None) or ()
    rules: list[RouteLimitRule] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        try:
            parsed = Limit.parse(entry.rate, burst=entry.burst)
        except ValueError as exc:
            raise GatewayConfigError(f"routes[{route.name}].limits[{index}]: {exc}") from None
        per: Per = entry.per
        # Two limits on the same value (10/second and 1000/hour per key) need two buckets.
        count = seen.get(per, 0)
        seen[per] = count + 1
        tag = per if count == 0 else f"{per}#{count}"
        rules.append(RouteLimitRule(per, f"{route.name}:{tag}:", parsed, entry.fail))
    return tuple(rules)


def _value(ex: Exchange, per: Per) -> str | None:
    identity = ex.identity
    if per == "ip":
        address = client_ip(ex.scope, ex.gateway.trusted_proxies)
        return ip_bucket(address) if address is not None else None
    if per == "route":
        route = ex.route
        return route.name if route is not None else None
    if identity is None:
        return None
    if per == "key":
        return identity.key_id
    if per == "subject":
        return identity.subject
    client = identity.claims.get("client_id")
    return client if isinstance(client, str) and client else None


def _client_of(identity: Identity | None) -> str | None:
    client = identity.claims.get("client_id") if identity is not None else None
    return client if isinstance(client, str) and client else None


def _local_share(checks: list[Check], nodes: int) -> list[Check]:
    # Each node alone enforces its share, so the nodes together stay near the limit.
    if nodes <= 1:
        return checks
    return [(key, limit.divided(nodes)) for key, limit in checks]


async def _decide(gateway: Gateway, checks: list[Check], fails_closed: bool) -> Result:
    health = gateway.limiter_health
    try:
        result = await gateway.limiter.check(checks)
    except SharedStateUnavailableError as exc:
        if health is not None:
            health.failed(exc, fail_closed=fails_closed)
        if fails_closed:
            if health is None:
                logger.warning("rate limiter unavailable, failing closed: %s", exc)
            raise RateLimiterUnavailableError(
                "The rate limiter is unavailable; try again shortly."
            ) from None
        if health is None:
            logger.warning("rate limiter unavailable, deciding locally: %s", exc)
        nodes = gateway.node_count.count if gateway.node_count is not None else 1
        return replace(
            gateway.fallback_limiter.check_now(_local_share(checks, nodes)), degraded=True
        )
    if health is not None and health.down_since is not None:
        health.succeeded()
    return result


async def limit(ex: Exchange) -> None:
    """Check every applicable limit of the route, and the API key's own, in one limiter call.

    The key's limits are its operator override when one is set, else its
    stored ``rate_limits``. Admitted: the response will carry ``RateLimit``
    and ``RateLimit-Policy``. Raises :class:`RateLimitedError` (429) when a
    limit refuses, and :class:`RateLimiterUnavailableError` (503) when the
    shared limiter is unreachable and one of the applicable limits fails
    closed (limits failing open are then decided by an in-process limiter
    with this node's share of each limit).
    """
    route = ex.route
    assert route is not None
    gateway = ex.gateway
    rules = gateway.route_limits.get(route.name)
    identity = ex.identity
    key_id = identity.key_id if identity is not None else None
    key_limits: tuple[Limit, ...] | None = None
    if key_id is not None:
        overrides = gateway.key_overrides
        key_limits = overrides.get(key_id) if overrides is not None else None
        if key_limits is None:
            key_limits = identity.key_limits if identity is not None else ()
    if not rules and not key_limits:
        return
    checks: list[Check] = []
    fails_closed = False
    for rule in rules or ():
        value = _value(ex, rule.per)
        if value is None:
            continue  # the request has no such value: this limit does not apply
        checks.append((rule.prefix + value, rule.limit))
        fails_closed = fails_closed or rule.fail == "closed"
    if key_limits and key_id is not None:
        checks += key_checks(key_id, key_limits)
        fails_closed = fails_closed or gateway.key_limits_fail == "closed"
    if not checks:
        return
    risk = gateway.risk
    if risk:  # something is flagged: tighten this request's limits if it is
        assert risk is not None
        factor = max(
            risk.factor("key", key_id),
            risk.factor("ip", client_ip(ex.scope, gateway.trusted_proxies)),
            risk.factor("subject", identity.subject if identity is not None else None),
            risk.factor("client", _client_of(identity)),
        )
        if factor > 1:
            checks = [(key, limit.divided(factor)) for key, limit in checks]
    result = await _decide(gateway, checks, fails_closed)
    if not result.allowed:
        raise RateLimitedError("Rate limit exceeded; retry later.", result=result)
    # Upstream copies of bastion's rate-limit headers are replaced (applied by the proxy).
    ex.response_edits.append((_OURS.__contains__, rate_limit_fields(result)))
