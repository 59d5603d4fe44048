"""The ``limit`` step: route rate limits in front of the echo upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio

from bastion.demo import EchoServer
from bastion.gateway import (
    Gateway,
    GatewayConfigError,
    Identity,
    RateLimitedError,
    RateLimiterUnavailableError,
)
from bastion.gateway.pipeline import Exchange
from bastion.http.middleware.errors import ErrorMiddleware
from bastion.ratelimit import Limiter, MemoryLimiter, RedisLimiter
from bastion.settings.models import RouteLimit
from bastion.storage.shared import RedisSharedState
from gateway.gateway_support import Match, Result, call

DOWN_URL = "redis://127.0.0.1:1/0"
NOW = 10**12  # a fixed clock (µs): header values are exact


@dataclass(frozen=True)
class LimitedRoute:
    """Stand-in for bastion.settings.RouteSettings with ``limits``."""

    name: str
    match: Match
    upstream: str = "http://127.0.0.1:9"
    public: bool = True
    auth: Sequence[str] = field(default_factory=tuple)
    strip_prefix: bool = False
    timeout: float = 5.0
    limits: Sequence[Any] = field(default_factory=tuple)


def limits(*specs: str) -> tuple[RouteLimit, ...]:
    """``"key 3/minute"`` or ``"ip 2/minute burst=4 open"`` → RouteLimit settings."""
    out = []
    for spec in specs:
        per, rate, *rest = spec.split()
        kw: dict[str, Any] = {"per": per, "rate": rate}
        for word in rest:
            if word.startswith("burst="):
                kw["burst"] = int(word[6:])
            else:
                kw["fail"] = word
        out.append(RouteLimit(**kw))
    return tuple(out)


async def fake_auth(ex: Exchange) -> Identity | None:
    """``X-Key: k`` → an API key identity; ``X-Jwt: s`` → a token identity (no key id)."""
    for name, value in ex.scope["headers"]:
        if name == b"x-key":
            key = value.decode()
            return Identity("api_key", subject=f"user-{key}", key_id=key)
        if name == b"x-jwt":
            sub = value.decode()
            return Identity("jwt", subject=sub, claims={"sub": sub, "client_id": "app"})
    return None


def gateway(
    echo: EchoServer, *specs: str, limiter: Limiter | None = None, public: bool = False
) -> Gateway:
    route = LimitedRoute(
        name="orders",
        match=Match(path="/orders"),
        upstream=echo.url,
        public=public,
        auth=() if public else ("api_key", "jwt"),
        limits=limits(*specs),
    )
    if limiter is None:
        limiter = MemoryLimiter(clock=lambda: NOW)
    return Gateway(
        [route], authenticators={"api_key": fake_auth, "jwt": fake_auth}, limiter=limiter
    )


async def get(app: Any, key: str | None = None, ip: str = "203.0.113.7", **kw: Any) -> Result:
    headers = [("X-Key", key)] if key is not None else []
    headers += kw.pop("headers", [])
    return await call(app, "GET", "/orders/1", headers=headers, client=(ip, 40000), **kw)


async def test_sequential_exactly_n_then_429_with_headers(echo: EchoServer) -> None:
    gw = gateway(echo, "key 3/minute")
    seen = []
    for _ in range(3):
        response = await get(gw, "k1")
        assert response.status == 200
        assert response.header("RateLimit-Policy") == '"3/minute";q=3;w=60'
        seen.append(response.header("RateLimit"))
    assert seen == ['"3/minute";r=2;t=20', '"3/minute";r=1;t=40', '"3/minute";r=0;t=60']
    for _ in range(2):
        with pytest.raises(RateLimitedError) as info:
            await get(gw, "k1")
        error = info.value
        assert (error.status, error.code, error.retry_after) == (429, "rate_limited", 20)
        assert error.headers == [
            ("RateLimit-Policy", '"3/minute";q=3;w=60'),
            ("RateLimit", '"3/minute";r=0;t=60'),
        ]
    assert len(echo.received) == 3


async def test_route_limit_headers_on_admitted_responses(echo: EchoServer) -> None:
    gw = gateway(echo, "route 5/second")
    response = await get(gw, "k1", headers=[("RateLimit", "forged")])
    assert response.status == 200
    assert response.header("RateLimit") == '"5/second";r=4;t=1'


async def test_concurrent_requests_admit_exactly_n(echo: EchoServer) -> None:
    n = 5
    gw = gateway(echo, f"key {n}/minute", limiter=MemoryLimiter())
    outcomes = await asyncio.gather(*(get(gw, "k1") for _ in range(10 * n)), return_exceptions=True)
    admitted = [o for o in outcomes if isinstance(o, Result)]
    refused = [o for o in outcomes if isinstance(o, RateLimitedError)]
    assert (len(admitted), len(refused)) == (n, 9 * n)
    assert all(r.status == 200 and r.header("RateLimit") is not None for r in admitted)
    assert len(echo.received) == n


async def test_per_key_limits_do_not_share_buckets(echo: EchoServer) -> None:
    gw = gateway(echo, "key 1/minute")
    assert (await get(gw, "a")).status == 200
    with pytest.raises(RateLimitedError):
        await get(gw, "a")
    assert (await get(gw, "b")).status == 200  # same IP, other key


async def test_per_ip_limits_do_not_share_buckets(echo: EchoServer) -> None:
    gw = gateway(echo, "ip 1/minute")
    assert (await get(gw, "a", ip="198.51.100.1")).status == 200
    with pytest.raises(RateLimitedError):
        await get(gw, "b", ip="198.51.100.1")  # other key, same IP
    assert (await get(gw, "a", ip="198.51.100.2")).status == 200


async def test_a_refused_request_consumes_nothing_from_other_limits(echo: EchoServer) -> None:
    gw = gateway(echo, "key 1/minute", "ip 3/minute")
    first = await get(gw, "a")
    assert first.header("RateLimit") == '"1/minute";r=0;t=60, "3/minute";r=2;t=20'
    for _ in range(5):
        with pytest.raises(RateLimitedError) as info:
            await get(gw, "a")
        assert info.value.headers[1] == ("RateLimit", '"1/minute";r=0;t=60, "3/minute";r=2;t=20')
    # The IP's bucket still holds 2: key b (same IP) gets them.
    second = await get(gw, "b")
    assert second.header("RateLimit") == '"1/minute";r=0;t=60, "3/minute";r=1;t=40'
    assert len(echo.received) == 2


async def test_limit_on_a_value_the_request_lacks_is_skipped(echo: EchoServer) -> None:
    gw = gateway(echo, "key 1/minute")
    for _ in range(3):  # a token has no key id: no per-key limit applies
        response = await call(gw, "GET", "/orders", headers=[("X-Jwt", "alice")])
        assert response.status == 200 and response.header("RateLimit") is None


async def test_subject_client_and_route_values(echo: EchoServer) -> None:
    gw = gateway(echo, "subject 1/minute", "client 2/minute", "route 3/minute")
    assert (await call(gw, "GET", "/orders", headers=[("X-Jwt", "alice")])).status == 200
    with pytest.raises(RateLimitedError):  # alice's subject bucket is empty
        await call(gw, "GET", "/orders", headers=[("X-Jwt", "alice")])
    bob = await call(gw, "GET", "/orders", headers=[("X-Jwt", "bob")])
    assert bob.header("RateLimit") == (
        '"1/minute";r=0;t=60, "2/minute";r=0;t=60, "3/minute";r=1;t=40'
    )
    with pytest.raises(RateLimitedError):  # client "app" is exhausted
        await call(gw, "GET", "/orders", headers=[("X-Jwt", "carol")])
    # A key identity has no client id: only its subject and the route apply.
    last = await get(gw, "k")
    assert last.header("RateLimit") == '"1/minute";r=0;t=60, "3/minute";r=0;t=60'
    with pytest.raises(RateLimitedError):
        await get(gw, "k2")  # the route as a whole is exhausted


async def test_two_limits_on_the_same_value_get_their_own_buckets(echo: EchoServer) -> None:
    gw = gateway(echo, "key 2/second", "key 3/minute")
    response = await get(gw, "a")
    assert response.header("RateLimit") == '"2/second";r=1;t=1, "3/minute";r=2;t=20'


async def test_429_renders_as_problem_json_with_retry_after(echo: EchoServer) -> None:
    app = ErrorMiddleware(gateway(echo, "ip 1/hour"))
    assert (await get(app, "a")).status == 200
    response = await get(app, "a")
    assert response.status == 429
    assert response.header("Retry-After") == "3600"
    assert response.json()["reason"] == "rate_limited"
    assert len(echo.received) == 1


def test_invalid_limit_is_a_config_error() -> None:
    @dataclass(frozen=True)
    class Bad:
        per: str = "key"
        rate: str = "10/fortnight"
        burst: int | None = None
        fail: str = "closed"

    route = LimitedRoute(name="r", match=Match(path="/r"), limits=(Bad(),))
    with pytest.raises(GatewayConfigError) as info:
        Gateway([route])
    assert info.value.detail == (
        "routes[r].limits[0]: invalid rate limit '10/fortnight': unknown unit 'fortnight' "
        "(use second, minute, hour or day)"
    )


@pytest.fixture
async def down_limiter() -> AsyncIterator[RedisLimiter]:
    """A Redis limiter nobody listens behind."""
    client = redis.asyncio.Redis.from_url(DOWN_URL, socket_connect_timeout=0.5, socket_timeout=0.5)
    state = RedisSharedState(client, url=DOWN_URL)
    yield RedisLimiter(state)
    await state.close()


async def test_redis_down_fails_closed_with_503(echo: EchoServer, down_limiter: Limiter) -> None:
    gw = gateway(echo, "key 5/minute", limiter=down_limiter)
    with pytest.raises(RateLimiterUnavailableError) as info:
        await get(gw, "a")
    error = info.value
    assert (error.status, error.code, error.retry_after) == (503, "rate_limiter_unavailable", 1)
    response = await get(ErrorMiddleware(gw), "a")
    assert response.status == 503
    assert response.header("Retry-After") == "1"
    assert response.json()["reason"] == "rate_limiter_unavailable"
    assert len(echo.received) == 0


async def test_one_closed_limit_fails_the_request_closed(
    echo: EchoServer, down_limiter: Limiter
) -> None:
    gw = gateway(echo, "key 5/minute open", "ip 5/minute", limiter=down_limiter)
    with pytest.raises(RateLimiterUnavailableError):
        await get(gw, "a")


async def test_redis_down_fails_open_locally(echo: EchoServer, down_limiter: Limiter) -> None:
    gw = gateway(echo, "key 1/minute open", limiter=down_limiter)
    response = await get(gw, "a")
    assert response.status == 200
    assert response.header("RateLimit") == '"1/minute";r=0;t=60'
    with pytest.raises(RateLimitedError):  # still limited, by this node alone
        await get(gw, "a")
    assert len(echo.received) == 1


async def test_redis_limiter_admits_exactly_n(
    echo: EchoServer, redis_url: str, redis_prefix: str
) -> None:
    state = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
    try:
        gw = gateway(echo, "key 4/minute", limiter=RedisLimiter(state))
        outcomes = await asyncio.gather(*(get(gw, "k") for _ in range(40)), return_exceptions=True)
        assert sum(isinstance(o, Result) for o in outcomes) == 4
        assert sum(isinstance(o, RateLimitedError) for o in outcomes) == 36
        assert len(echo.received) == 4
    finally:
        await state.close()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:0:0:99"),  # same /64, another address
        ("2001:DB8:1:2::1", "2001:db8:1:2:0::1"),  # another spelling of the same address
        ("192.0.2.7", "::ffff:192.0.2.7"),  # IPv4 and its IPv4-mapped IPv6 form
    ],
)
async def test_per_ip_limits_count_the_canonical_address(
    echo: EchoServer, first: str, second: str
) -> None:
    app = ErrorMiddleware(gateway(echo, "ip 1/hour"))
    assert (await get(app, "a", ip=first)).status == 200
    response = await get(app, "b", ip=second)
    assert response.status == 429
    assert response.json()["reason"] == "rate_limited"
    assert len(echo.received) == 1


async def test_per_ip_limits_of_other_ipv6_networks_do_not_share(echo: EchoServer) -> None:
    gw = gateway(echo, "ip 1/hour")
    assert (await get(gw, "a", ip="2001:db8:1:2::1")).status == 200
    assert (await get(gw, "a", ip="2001:db8:1:3::1")).status == 200  # the next /64
