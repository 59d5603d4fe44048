"""The native limit step on Redis: Python's script, keys and headers; one budget with Python."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bastion import _native
from bastion.ratelimit import Limit, RedisLimiter, rate_limit_headers
from bastion.ratelimit.backends import _GCRA_SCRIPT
from bastion.storage.shared import RedisSharedState
from bastion.storage.shared.resp import native_config

SECTION = json.dumps(
    {
        "rules": [
            {"per": "key", "prefix": "orders:key:", "rate": 4, "period": 60.0, "burst": 4},
            {"per": "ip", "prefix": "orders:ip:", "rate": 100, "period": 60.0, "burst": 20},
        ],
        "store": "redis",
    }
)


SECTION_RULE = {"per": "key", "prefix": "flush:key:", "rate": 5, "period": 1.0, "burst": 5}


def test_the_script_is_pythons() -> None:
    assert _native.redis_gcra_script() == _GCRA_SCRIPT


def test_native_config_reads_the_url_like_redis_py() -> None:
    assert native_config(
        "redis://user:secret@cache.internal:6380/3",
        key_prefix="b:",
        connect_timeout=0.5,
        timeout=1.0,
    ) == {
        "host": "cache.internal",
        "port": 6380,
        "path": None,
        "db": 3,
        "username": "user",
        "password": "secret",
        "key_prefix": "b:",
        "connect_timeout": 0.5,
        "timeout": 1.0,
        "tls": None,
    }


def test_native_config_takes_rediss_only_with_the_tls_options_it_applies() -> None:
    def config(url: str) -> dict[str, object] | None:
        return native_config(url, key_prefix="", connect_timeout=1, timeout=1)

    plain = config("rediss://cache:6380/0")
    assert plain is not None
    assert (plain["host"], plain["port"], plain["db"]) == ("cache", 6380, 0)
    assert plain["tls"] == {"ca_certs": None, "certfile": None, "keyfile": None}
    files = config(
        "rediss://cache:6380/0?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        "&ssl_cert_reqs=required&ssl_check_hostname=true"
    )
    assert files is not None
    assert files["tls"] == {"ca_certs": "/ca.pem", "certfile": "/c.pem", "keyfile": "/k.pem"}
    # Anything else is redis-py's alone (never a weaker native check).
    for options in (
        "ssl_cert_reqs=none",
        "ssl_cert_reqs=optional",
        "ssl_check_hostname=false",
        "ssl_ca_path=/etc/ssl/certs",
        "ssl_min_version=2",
        "ssl_certfile=/c.pem",
        "ssl_keyfile=/k.pem",
    ):
        assert config(f"rediss://cache:6380/0?{options}") is None, options


@pytest.fixture
async def state(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisSharedState]:
    shared = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
    config = shared.native_hot_path_config(1.0)
    assert config is not None
    _native.redis_limiter_configure(json.dumps(config))
    try:
        yield shared
    finally:
        _native.redis_limiter_configure(None)
        await shared.close()


async def test_native_and_python_nodes_share_buckets(state: RedisSharedState) -> None:
    python = RedisLimiter(state)
    checks = [
        ("orders:key:k1", Limit.parse("4/minute")),
        ("orders:ip:192.0.2.1", Limit.parse("100/minute", burst=20)),
    ]
    native = [
        _native.redis_limit_check(SECTION, "orders", key_id="k1", client_ip="192.0.2.1")
        for _ in range(2)
    ]
    assert [n[0] for n in native] == [True, True]
    assert native[0][1][0] == ("ratelimit-policy", '"4/minute";q=4;w=60, "100/minute";q=20;w=12')
    assert native[1][1][1][1].startswith('"4/minute";r=2;t=30, "100/minute";r=18;t=')
    assert (await python.check(checks)).allowed
    assert (await python.check(checks)).allowed
    refused = _native.redis_limit_check(SECTION, "orders", key_id="k1", client_ip="192.0.2.1")
    assert refused[0] is False and refused[2] is not None and 1 <= refused[2] <= 15
    python_refused = await python.check(checks)
    assert not python_refused.allowed
    headers = rate_limit_headers(python_refused)
    assert refused[1][0] == ("ratelimit-policy", headers[0][1])
    # The same keys as Python's limiter, under the shared prefix.
    assert await state.client.exists(python.redis_key("orders:key:k1")) == 1


async def test_a_flushed_script_is_loaded_again(state: RedisSharedState) -> None:
    section = json.dumps({"rules": [SECTION_RULE], "store": "redis"})
    assert _native.redis_limit_check(section, "flush", key_id="k")[0]
    await state.client.script_flush()
    # EVALSHA answers NOSCRIPT: the native limiter falls back to EVAL, same budget.
    assert _native.redis_limit_check(section, "flush", key_id="k")[0]
    found = await state.client.get(state.namespaced("ratelimit:flush:key:k"))
    assert found is not None and int(found) > 0


async def test_an_unreachable_redis_is_an_error_the_front_defers_on() -> None:
    _native.redis_limiter_configure(
        json.dumps({"host": "127.0.0.1", "port": 1, "connect_timeout": 0.2, "timeout": 0.2})
    )
    try:
        with pytest.raises(RuntimeError, match="redis: "):
            _native.redis_limit_check(SECTION, "orders", key_id="k1")
    finally:
        _native.redis_limiter_configure(None)
