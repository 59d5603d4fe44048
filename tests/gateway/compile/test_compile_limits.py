"""compile/limits.py: a route's limits as the native limit step reads them."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bastion import _native
from bastion.gateway.compile import compile_table, limits
from bastion.settings.config import Settings


def _settings(**extra: object) -> Settings:
    return Settings.model_validate(
        {
            "routes": [
                {
                    "name": "orders",
                    "match": {"path": "/api/orders"},
                    "upstream": "http://127.0.0.1:9000",
                    "auth": ["api_key"],
                    "limits": [
                        {"per": "key", "rate": "10/second"},
                        {"per": "key", "rate": "1000/hour", "burst": 50, "fail": "open"},
                        {"per": "ip", "rate": "3/minute"},
                    ],
                },
                {
                    "name": "open",
                    "match": {"path": "/api/open"},
                    "upstream": "http://127.0.0.1:9000",
                    "public": True,
                },
            ],
            **extra,
        }
    )


def test_rules_carry_pythons_buckets_and_integers() -> None:
    settings = _settings()
    assert limits.section(settings.routes[0], settings) == {
        "rules": [
            {
                "per": "key",
                "prefix": "orders:key:",
                "rate": 10,
                "period": 1.0,
                "burst": 10,
                "interval_us": 100_000,
                "tolerance_us": 1_000_000,
                "fail": "closed",
            },
            {
                "per": "key",
                "prefix": "orders:key#1:",
                "rate": 1000,
                "period": 3600.0,
                "burst": 50,
                "interval_us": 3_600_000,
                "tolerance_us": 180_000_000,
                "fail": "open",
            },
            {
                "per": "ip",
                "prefix": "orders:ip:",
                "rate": 3,
                "period": 60.0,
                "burst": 3,
                "interval_us": 20_000_000,
                "tolerance_us": 60_000_000,
                "fail": "closed",
            },
        ],
        "store": "memory",
        "key_limits_fail": "closed",
        "shedding": None,
    }
    # A route without limits still has a section: API keys bring their own limits.
    assert limits.section(settings.routes[1], settings) == {
        "rules": [],
        "store": "memory",
        "key_limits_fail": "closed",
        "shedding": None,
    }


def test_redis_and_shedding_are_native_but_tls_redis_stays_in_python() -> None:
    redis = _settings(
        shared={"url": "redis://127.0.0.1:6379/0"}, ratelimit={"key_limits_fail": "open"}
    )
    section = limits.section(redis.routes[0], redis)
    assert isinstance(section, dict)
    assert (section["store"], section["key_limits_fail"], len(section["rules"])) == (
        "redis",
        "open",
        3,
    )
    tls = _settings(shared={"url": "rediss://127.0.0.1:6380/0"})
    section = limits.section(tls.routes[0], tls)
    assert isinstance(section, dict) and section["store"] == "redis"
    # TLS options the native connection does not apply are refused by the settings.
    with pytest.raises(ValidationError, match="does not apply ssl_cert_reqs"):
        _settings(shared={"url": "rediss://127.0.0.1:6380/0?ssl_cert_reqs=none"})
    shedding = _settings(
        ratelimit={"shedding": {"enabled": True, "initial_limit": 4, "target_latency": "200ms"}}
    )
    section = limits.section(shedding.routes[1], shedding)
    assert isinstance(section, dict)
    assert section["shedding"] == {
        "initial": 4,
        "minimum": 1,
        "maximum": 1000,
        "target_latency": 0.2,
        "backoff": 0.9,
    }
    assert limits.section(redis.routes[0], redis)["shedding"] is None  # type: ignore[index]


def test_the_native_loader_accepts_every_compiled_section() -> None:
    table = compile_table(_settings())
    for route in table["routes"]:
        section = json.dumps(route["limits"])
        allowed, headers, retry_after = _native.limit_check(section, route["name"])
        assert (allowed, retry_after) == (True, None)
        # No key, no client IP: only the per-route-less rules could apply, and none does.
        assert headers == []
