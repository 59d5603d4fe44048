"""``GET/PUT/DELETE /admin/api/v1/keys/{id}/limits``: usage and runtime overrides over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_http_admin_keys import Env, close_env, open_env

from bastion.gateway.control import GatewayControl
from bastion.http.endpoints.admin import KEYS_PATH
from bastion.ratelimit import Limit, MemoryLimiter
from bastion.ratelimit.keys import OVERRIDE_PREFIX, KeyLimitOverrides, key_checks


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    e = await open_env(sqlite_url)
    control = GatewayControl([], authenticators={}, limiter=MemoryLimiter())
    control.key_overrides = KeyLimitOverrides(e.runtime.db, e.runtime.shared)
    e.runtime.control = control
    try:
        yield e
    finally:
        await close_env(e)


async def test_show_reports_the_keys_own_limits_and_live_usage(env: Env) -> None:
    key = await env.create(rate_limits=[{"rate": "5/minute"}])
    url = f"{KEYS_PATH}/{key['id']}/limits"
    response = await env.http.get(url, headers=env.auth("bastion:admin:read"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    doc = response.json()
    assert doc["source"] == "key"
    assert doc["override"] is None
    assert doc["limits"] == [{"rate": "5/minute", "burst": 5}]
    assert doc["usage"][0]["remaining"] == 5
    # Two requests through the gateway's limiter show in the usage; reading consumes nothing.
    limiter = env.runtime.control.limiter
    for _ in range(2):
        assert (await limiter.check(key_checks(key["id"], (Limit(5, 60.0),)))).allowed
    doc = (await env.http.get(url, headers=env.auth())).json()
    assert doc["usage"][0]["remaining"] == 3
    doc = (await env.http.get(url, headers=env.auth())).json()
    assert doc["usage"][0]["remaining"] == 3
    assert 0 < doc["usage"][0]["reset"] <= 24


async def test_override_replaces_and_clear_restores(env: Env) -> None:
    key = await env.create(rate_limits=[{"rate": "5/minute"}])
    url = f"{KEYS_PATH}/{key['id']}/limits"
    body = {"limits": [{"rate": "100/minute", "burst": 10}, {"rate": "1000/day"}]}
    response = await env.http.put(url, json=body, headers=env.auth())
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["source"] == "override"
    assert doc["key_limits"] == [{"rate": "5/minute", "burst": 5}]
    assert doc["limits"] == [
        {"rate": "100/minute", "burst": 10},
        {"rate": "1000/day", "burst": 1000},
    ]
    assert [u["remaining"] for u in doc["usage"]] == [10, 1000]
    # Stored for the other nodes (and restarts), and live in this node's gateway at once.
    stored = await env.runtime.db.settings.get(OVERRIDE_PREFIX + key["id"])
    assert stored.value == {"limits": doc["limits"]}
    assert env.runtime.control.key_overrides.get(key["id"]) == (
        Limit(100, 60.0, 10),
        Limit(1000, 86400.0),
    )
    response = await env.http.delete(url, headers=env.auth())
    assert response.status_code == 200
    assert response.json()["source"] == "key"
    assert env.runtime.control.key_overrides.get(key["id"]) is None
    assert await env.runtime.db.settings.find(OVERRIDE_PREFIX + key["id"]) is None


async def test_key_without_limits(env: Env) -> None:
    key = await env.create()
    doc = (await env.http.get(f"{KEYS_PATH}/{key['id']}/limits", headers=env.auth())).json()
    assert (doc["source"], doc["limits"], doc["usage"]) == ("none", [], [])


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        (
            {"limits": [{"rate": "10/fortnight"}]},
            "invalid_rate_limit",
            "limits[0]: invalid rate limit '10/fortnight': unknown unit 'fortnight' "
            "(use second, minute, hour or day)",
        ),
        (
            {"limits": [{"rate": "0/second"}]},
            "invalid_rate_limit",
            "limits[0]: invalid rate limit '0/second': the count must be at least 1",
        ),
        (
            {"limits": []},
            "invalid_request",
            "limits: List should have at least 1 item after validation, not 0",
        ),
        (
            {"limits": [{"rate": "1/second", "burst": 0}]},
            "invalid_request",
            "limits[0].burst: Input should be greater than or equal to 1",
        ),
        (
            {"limits": [{"rate": "1/second", "per": "ip"}]},
            "invalid_request",
            "limits[0].per: Extra inputs are not permitted",
        ),
    ],
)
async def test_bad_overrides_are_refused_by_code(
    env: Env, body: dict[str, object], code: str, detail: str
) -> None:
    key = await env.create()
    response = await env.http.put(f"{KEYS_PATH}/{key['id']}/limits", json=body, headers=env.auth())
    assert response.status_code == 400
    problem = response.json()
    assert (problem["reason"], problem["detail"]) == (code, detail)
    assert env.runtime.control.key_overrides.get(key["id"]) is None


async def test_unknown_key_and_read_scope(env: Env) -> None:
    response = await env.http.get(f"{KEYS_PATH}/nope/limits", headers=env.auth())
    assert response.status_code == 404
    key = await env.create()
    response = await env.http.put(
        f"{KEYS_PATH}/{key['id']}/limits",
        json={"limits": [{"rate": "1/second"}]},
        headers=env.auth("bastion:admin:read"),
    )
    assert response.status_code == 403
    assert response.json()["reason"] == "insufficient_scope"
