"""The ``limit`` step with per-API-key limits, overrides, node shares and outage bookkeeping."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bastion.audit.events import Auditor, Event, EventTypes
from bastion.demo import EchoServer
from bastion.gateway import Gateway, Identity, RateLimitedError, RateLimiterUnavailableError
from bastion.gateway.authn.api_key import identity_of
from bastion.gateway.pipeline import Exchange
from bastion.ratelimit import Check, Limit, MemoryLimiter, Result
from bastion.ratelimit.keys import KeyLimitOverrides
from bastion.ratelimit.nodes import NodeCount
from bastion.ratelimit.outage import BackendHealth
from bastion.storage import Database
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.models import ApiKey
from bastion.storage.shared import MemorySharedState
from gateway.gateway_support import Match
from gateway.gateway_support import Result as HttpResult
from gateway.test_limit import NOW, LimitedRoute, get, limits

KEY_LIMITS = {"k1": (Limit(3, 60.0),), "k2": (Limit(2, 1.0), Limit(5, 60.0))}


async def key_auth(ex: Exchange) -> Identity | None:
    """``X-Key: k`` → an API key identity carrying the limits stored on key ``k``."""
    for name, value in ex.scope["headers"]:
        if name == b"x-key":
            key = value.decode()
            return Identity(
                "api_key", subject=f"u-{key}", key_id=key, key_limits=KEY_LIMITS.get(key, ())
            )
    return None


class Flaky:
    """A limiter that fails like an unreachable Redis while ``down`` is set."""

    def __init__(self) -> None:
        self.inner = MemoryLimiter(clock=lambda: NOW)
        self.down = False

    async def check(self, checks: Sequence[Check], *, cost: int = 1) -> Result:
        if self.down:
            raise SharedStateUnavailableError("Redis at redis://x is unreachable")
        return await self.inner.check(checks, cost=cost)


def gateway(echo: EchoServer, *specs: str, limiter: object | None = None) -> Gateway:
    route = LimitedRoute(
        name="orders",
        match=Match(path="/orders"),
        upstream=echo.url,
        public=False,
        auth=("api_key",),
        limits=limits(*specs),
    )
    return Gateway(
        [route],
        authenticators={"api_key": key_auth},
        limiter=limiter if limiter is not None else MemoryLimiter(clock=lambda: NOW),  # type: ignore[arg-type]
    )


def test_identity_of_a_key_carries_its_limits() -> None:
    key = ApiKey(digest="d", prefix="p", rate_limits=({"rate": "10/second", "burst": 20},))
    assert identity_of(key).key_limits == (Limit(10, 1.0, 20),)
    assert identity_of(ApiKey(digest="d", prefix="p")).key_limits == ()


async def test_key_limits_apply_without_route_limits(echo: EchoServer) -> None:
    gw = gateway(echo)
    for remaining in (2, 1, 0):
        response = await get(gw, "k1")
        assert response.status == 200
        assert response.header("RateLimit") == f'"3/minute";r={remaining};t={60 - remaining * 20}'
    with pytest.raises(RateLimitedError) as info:
        await get(gw, "k1")
    assert info.value.retry_after == 20
    assert len(echo.received) == 3
    # Another key, no limits of its own: unlimited here.
    for _ in range(10):
        assert (await get(gw, "free")).status == 200


async def test_key_and_route_limits_in_one_decision(echo: EchoServer) -> None:
    gw = gateway(echo, "ip 100/minute")
    response = await get(gw, "k2")
    assert response.header("RateLimit-Policy") == (
        '"100/minute";q=100;w=60, "2/second";q=2;w=1, "5/minute";q=5;w=60'
    )
    assert (await get(gw, "k2")).status == 200
    with pytest.raises(RateLimitedError) as info:  # 2/second refuses ...
        await get(gw, "k2")
    # ... and consumed nothing from the ip limit nor the 5/minute one.
    assert info.value.headers[1] == (
        "RateLimit",
        '"100/minute";r=98;t=2, "2/second";r=0;t=1, "5/minute";r=3;t=24',
    )


async def test_key_limits_are_shared_across_routes(echo: EchoServer) -> None:
    routes = [
        LimitedRoute(
            name=n, match=Match(path=f"/{n}"), upstream=echo.url, public=False, auth=("api_key",)
        )
        for n in ("orders", "billing")
    ]
    gw = Gateway(
        routes, authenticators={"api_key": key_auth}, limiter=MemoryLimiter(clock=lambda: NOW)
    )
    from gateway.gateway_support import call

    statuses = []
    for path in ("/orders", "/billing", "/orders", "/billing"):
        try:
            result = await call(gw, "GET", path, headers=[("X-Key", "k1")])
            statuses.append(result.status)
        except RateLimitedError:
            statuses.append(429)
    assert statuses == [200, 200, 200, 429]


async def test_override_replaces_the_keys_limits_at_once(echo: EchoServer, db: Database) -> None:
    shared = MemorySharedState()
    gw = gateway(echo)
    gw.key_overrides = KeyLimitOverrides(db, shared)
    await gw.key_overrides.set("k1", (Limit(1, 60.0),))
    assert (await get(gw, "k1")).header("RateLimit") == '"1/minute";r=0;t=60'
    with pytest.raises(RateLimitedError):
        await get(gw, "k1")
    # An override can also give limits to a key that has none.
    await gw.key_overrides.set("free", (Limit(1, 60.0),))
    await get(gw, "free")
    with pytest.raises(RateLimitedError):
        await get(gw, "free")
    # Cleared: the key's own 3/minute (a fresh bucket: it names the limit).
    assert await gw.key_overrides.clear("k1") is True
    assert await gw.key_overrides.clear("k1") is False
    assert (await get(gw, "k1")).header("RateLimit") == '"3/minute";r=2;t=20'


async def test_key_limits_fail_closed_by_default_and_open_on_request(echo: EchoServer) -> None:
    flaky = Flaky()
    gw = gateway(echo, limiter=flaky)
    flaky.down = True
    with pytest.raises(RateLimiterUnavailableError):
        await get(gw, "k1")
    gw.key_limits_fail = "open"
    assert (await get(gw, "k1")).status == 200


async def test_fail_open_share_is_the_limit_divided_by_live_nodes(echo: EchoServer) -> None:
    flaky = Flaky()
    gw = gateway(echo, "ip 6/minute open", limiter=flaky)
    gw.node_count = NodeCount(MemorySharedState(), "n1")
    gw.node_count.count = 3  # as the heartbeat last saw it
    flaky.down = True
    admitted = 0
    for _ in range(10):
        try:
            response = await get(gw, "free")
        except RateLimitedError:
            continue
        assert isinstance(response, HttpResult)
        admitted += 1
    assert admitted == 2  # 6/minute shared by 3 nodes


async def test_outage_and_recovery_are_audited_once_each(echo: EchoServer) -> None:
    flaky = Flaky()
    auditor = Auditor()
    events: list[Event] = []
    auditor.subscribe(events.append)
    gw = gateway(echo, "ip 100/minute open", limiter=flaky)
    gw.limiter_health = BackendHealth(auditor, node_id="n1")
    await get(gw, "free")
    assert events == []
    flaky.down = True
    for _ in range(5):
        await get(gw, "free")
    assert [(e.type, e.outcome, e.reason) for e in events] == [
        (EventTypes.RATELIMIT_BACKEND_DOWN, "failure", "shared_state_unavailable")
    ]
    assert events[0].data["error"] == "Redis at redis://x is unreachable"
    assert gw.limiter_health.up is False
    flaky.down = False
    for _ in range(3):
        await get(gw, "free")
    assert [e.type for e in events] == [
        EventTypes.RATELIMIT_BACKEND_DOWN,
        EventTypes.RATELIMIT_BACKEND_UP,
    ]
    assert events[1].data["down_seconds"] >= 0
    assert gw.limiter_health.up is True
