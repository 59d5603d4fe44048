"""The native GCRA store behind MemoryLimiter: one budget for the Python and native limit steps."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion import _native
from bastion.gateway.compile import limits as compile_limits
from bastion.ratelimit import Limit, MemoryLimiter, ip_bucket, rate_limit_headers
from bastion.ratelimit.keys import KeyLimitOverrides, key_checks
from bastion.settings.config import Settings as BastionSettings

S = 1_000_000


def _route_section() -> tuple[str, list[tuple[str, Limit]]]:
    settings = BastionSettings.model_validate(
        {
            "routes": [
                {
                    "name": "orders",
                    "match": {"path": "/api/orders"},
                    "upstream": "http://127.0.0.1:9000",
                    "auth": ["api_key"],
                    "limits": [
                        {"per": "key", "rate": "5/minute"},
                        {"per": "ip", "rate": "100/minute", "burst": 20},
                    ],
                }
            ]
        }
    )
    section = compile_limits.section(settings.routes[0], settings)
    checks = [
        ("orders:key:k1", Limit.parse("5/minute")),
        ("orders:ip:2001:db8::/64", Limit.parse("100/minute", burst=20)),
    ]
    return json.dumps(section), checks


def test_serve_native_installs_the_store() -> None:
    private = MemoryLimiter()
    shared = MemoryLimiter(serve_native=True)
    assert shared._store.installed() and not private._store.installed()
    with pytest.raises(ValueError, match="must use its clock"):
        MemoryLimiter(clock=lambda: 0, serve_native=True)


def test_native_and_python_steps_draw_from_one_budget() -> None:
    section, checks = _route_section()
    limiter = MemoryLimiter(serve_native=True)
    now = _native.limit_now()
    native = [
        _native.limit_check(
            section, "orders", key_id="k1", subject="u", client_ip="2001:db8::7", now=now
        )
        for _ in range(2)
    ]
    python = [limiter.check_now(checks) for _ in range(2)]
    assert [n[0] for n in native] == [True, True]
    assert [p.allowed for p in python] == [True, True]
    # The headers are the Python step's, byte for byte, on the shared state.
    assert native[1][1] == [
        ("ratelimit-policy", '"5/minute";q=5;w=60, "100/minute";q=20;w=12'),
        ("ratelimit", '"5/minute";r=3;t=24, "100/minute";r=18;t=2'),
    ]
    assert [tuple(h) for h in rate_limit_headers(python[1])[1:]] == [
        ("RateLimit", '"5/minute";r=1;t=48, "100/minute";r=16;t=3')
    ]
    last = _native.limit_check(section, "orders", key_id="k1", client_ip="2001:db8::8", now=now)
    assert last[0] is True
    refused = _native.limit_check(section, "orders", key_id="k1", client_ip="2001:db8::9", now=now)
    assert refused == (
        False,
        [
            ("ratelimit-policy", '"5/minute";q=5;w=60, "100/minute";q=20;w=12'),
            ("ratelimit", '"5/minute";r=0;t=60, "100/minute";r=15;t=3'),
        ],
        12,
    )
    assert not limiter.check_now(checks).allowed


async def test_key_overrides_reach_the_native_step() -> None:
    section = json.dumps({"rules": []})
    shared = MemoryLimiter(serve_native=True)
    overrides = KeyLimitOverrides(db=None, shared=None, native=True)  # type: ignore[arg-type]
    own = json.dumps([{"rate": "1/minute"}])
    overrides._limits["k9"] = (Limit.parse("3/minute"),)
    overrides._mirror("k9")
    now = _native.limit_now()
    admitted = [
        _native.limit_check(section, "r", key_id="k9", key_limits_json=own, now=now)[0]
        for _ in range(4)
    ]
    assert admitted == [True, True, True, False]
    # The bucket is the Python step's: a Python check of the same limit sees it spent.
    assert not shared.check_now(key_checks("k9", (Limit.parse("3/minute"),))).allowed
    # Override lifted: the key's own limit applies again, on its own bucket.
    overrides._limits.pop("k9")
    overrides._mirror("k9")
    assert _native.limit_check(section, "r", key_id="k9", key_limits_json=own, now=now)[0]
    assert not _native.limit_check(section, "r", key_id="k9", key_limits_json=own, now=now)[0]


@settings(max_examples=60, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["k1", "k2", None]),
            st.sampled_from(["192.0.2.1", "2001:db8::1", "2001:db8::2", None]),
            st.integers(min_value=0, max_value=30 * S),
        ),
        max_size=40,
    )
)
def test_native_step_decides_and_renders_like_python(
    requests: list[tuple[str | None, str | None, int]],
) -> None:
    section, _ = _route_section()
    MemoryLimiter(serve_native=True)  # a fresh installed store for the native side
    now = [1_000 * S]
    python = MemoryLimiter(clock=lambda: now[0])
    key_limit = Limit.parse("2/second", burst=3)
    for key, ip, step in requests:
        now[0] += step
        checks: list[tuple[str, Limit]] = []
        if key is not None:
            checks.append((f"orders:key:{key}", Limit.parse("5/minute")))
        if ip is not None:
            checks.append((f"orders:ip:{ip_bucket(ip)}", Limit.parse("100/minute", burst=20)))
        if key is not None:
            checks += key_checks(key, (key_limit,))
        native = _native.limit_check(
            section,
            "orders",
            key_id=key,
            client_ip=ip,
            key_limits_json=json.dumps([{"rate": "2/second", "burst": 3}]),
            now=now[0],
        )
        if not checks:
            assert native == (True, [], None)
            continue
        result = python.check_now(checks)
        headers = rate_limit_headers(result)
        expected_retry = None if result.allowed else int(headers[2][1])
        assert native == (
            result.allowed,
            [(name.lower(), value) for name, value in headers[:2]],
            expected_retry,
        )
