"""Exchanged tokens at the gateway act as their key: audiences, limits, routes, revocation.

A real Runtime (``Runtime.open`` + ``startup``: the channels are followed) with
gateway routes to a real echo upstream; httpx talks to the full ASGI app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import EchoThread
from bastion.apikeys import ApiKeySpec
from bastion.http.endpoints import create_full_app
from bastion.http.endpoints.admin import KEYS_PATH, admin_audience
from bastion.protocol import rfc8693
from bastion.runtime import Runtime
from features.api_key_exchange.conftest import make_settings

TOKEN = "/oauth2/token"
REPORTS = "https://reports.example.com"


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


def routes(upstream: str, reports_audience: str = REPORTS) -> list[dict[str, Any]]:
    return [
        {
            "name": "orders",
            "match": {"path": "/api/orders"},
            "upstream": upstream,
            "auth": ["api_key", "jwt"],
        },
        {
            "name": "catalog",
            "match": {"path": "/api/catalog"},
            "upstream": upstream,
            "auth": ["jwt"],
        },
        {
            "name": "reports",
            "match": {"path": "/api/reports"},
            "upstream": upstream,
            "auth": ["jwt"],
            "jwt": {"audience": reports_audience},
        },
    ]


async def open_runtime(tmp_path: Path, echo: EchoThread, **extra: Any) -> Runtime:
    settings = make_settings(tmp_path, routes=routes(echo.server.url), **extra)
    rt = await Runtime.open(settings, announce=lambda line: None)
    await rt.startup()
    await asyncio.sleep(0.05)  # the invalidation channels are subscribed
    return rt


@pytest.fixture
async def runtime(tmp_path: Path, echo: EchoThread) -> AsyncIterator[Runtime]:
    rt = await open_runtime(tmp_path, echo)
    try:
        yield rt
    finally:
        await rt.shutdown()
        await rt.close()


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_full_app(runtime), client=("198.51.100.7", 4000)),
        base_url="https://testserver",
    ) as client:
        yield client


async def new_key(runtime: Runtime, **spec: Any) -> tuple[Any, str]:
    spec.setdefault("name", "svc")
    result: tuple[Any, str] = await runtime.api_keys.create(ApiKeySpec(**spec))
    return result


async def exchange(http: httpx.AsyncClient, key: str, **extra: str) -> httpx.Response:
    return await http.post(
        TOKEN,
        data={
            "grant_type": rfc8693.GRANT_TYPE,
            "subject_token": key,
            "subject_token_type": rfc8693.API_KEY_TOKEN_TYPE,
            **extra,
        },
    )


async def token_of(http: httpx.AsyncClient, key: str, **extra: str) -> dict[str, str]:
    response = await exchange(http, key, **extra)
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


async def status_within(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int, seconds: float = 2
) -> httpx.Response:
    """The first response with ``status`` within ``seconds`` (channels deliver asynchronously)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await http.get(path, headers=headers)
        if response.status_code == status or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.02)


# -- 4. audiences ---------------------------------------------------------------------


@pytest.mark.parametrize("routes_of_key", [[], ["orders"], ["admin-api-as-route"]])
async def test_the_admin_audience_is_never_obtainable(
    runtime: Runtime, http: httpx.AsyncClient, routes_of_key: list[str]
) -> None:
    admin = admin_audience(runtime.settings.issuer_url)
    keyroutes = [admin if name == "admin-api-as-route" else name for name in routes_of_key]
    _, key = await new_key(runtime, scopes=["bastion:admin"], routes=keyroutes)
    for target in ({"resource": admin}, {"audience": admin}):
        response = await exchange(http, key, **target)
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_target",
            "error_description": f"the API key may not obtain a token for '{admin}'",
        }
    # Nor does the default token get in.
    bearer = await token_of(http, key)
    refused = await http.get(KEYS_PATH, headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["reason"] == "invalid_token"


async def test_audiences_are_those_of_the_key_routes(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    issuer = runtime.settings.issuer_url
    _, anywhere = await new_key(runtime)
    _, orders_only = await new_key(runtime, routes=["orders"])
    # A key without routes: the issuer or any route's audience, nothing else.
    reports = await token_of(http, anywhere, resource=REPORTS)
    assert (await http.get("/api/reports/1", headers=reports)).status_code == 200
    for stranger in ("https://evil.example.com/", "https://api.example.com/orders"):
        response = await exchange(http, anywhere, resource=stranger)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_target"
    # A key for "orders" only: not the reports audience.
    response = await exchange(http, orders_only, resource=REPORTS)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    orders = await token_of(http, orders_only, resource=issuer)
    assert (await http.get("/api/orders/1", headers=orders)).status_code == 200
    # The issuer audience is accepted by "catalog" too, but the token acts as its key,
    # which may call "orders" only.
    response = await http.get("/api/catalog/1", headers=orders)
    assert response.status_code == 403
    assert response.json()["reason"] == "route_not_allowed"


# -- 5. limits, IP allow-lists, the exchange rate ----------------------------------------


async def test_the_key_limits_apply_to_its_tokens(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    _, key = await new_key(runtime, rate_limits=[{"rate": "2/minute"}])
    bearer = await token_of(http, key)
    statuses = [(await http.get("/api/orders/1", headers=bearer)).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    # One bucket for the key, whichever way it is presented.
    direct = await http.get("/api/orders/1", headers={"authorization": f"Bearer {key}"})
    assert direct.status_code == 429
    # A second token of the same key draws from the same bucket.
    again = await http.get("/api/orders/1", headers=await token_of(http, key))
    assert again.status_code == 429
    assert again.json()["reason"] == "rate_limited"


async def test_a_key_with_an_ip_allow_list_is_not_exchanged(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    _, key = await new_key(runtime, ip_allow=["198.51.100.0/24"])
    # Allowed from this address at the gateway …
    direct = await http.get("/api/orders/1", headers={"authorization": f"Bearer {key}"})
    assert direct.status_code == 200
    # … but a bearer token could be used from anywhere: refused.
    response = await exchange(http, key)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "an API key restricted to IP addresses "
        "cannot be exchanged for a token",
    }


async def test_exchanges_are_throttled_per_key(tmp_path: Path, echo: EchoThread) -> None:
    rt = await open_runtime(tmp_path, echo, api_keys={"exchange_rate": "2/minute"})
    try:
        _, key = await new_key(rt)
        _, other = await new_key(rt)
        transport = httpx.ASGITransport(app=create_full_app(rt), client=("198.51.100.7", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as http:
            assert [(await exchange(http, key)).status_code for _ in range(2)] == [200, 200]
            response = await exchange(http, key)
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"] == "rate_limited"
            assert (await exchange(http, other)).status_code == 200  # per key
    finally:
        await rt.shutdown()
        await rt.close()


# -- 6. the verified-token cache follows keys, signing keys and routes ------------------


@pytest.mark.parametrize("change", ["revoke", "disable", "delete"])
async def test_a_cached_token_ends_with_its_key(
    runtime: Runtime, http: httpx.AsyncClient, change: str
) -> None:
    record, key = await new_key(runtime)
    bearer = await token_of(http, key)
    assert (await http.get("/api/orders/1", headers=bearer)).status_code == 200  # cached now
    await getattr(runtime.api_keys, change)(record.id)
    response = await status_within(http, "/api/orders/1", bearer, 401)
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"


async def test_an_uncached_token_of_a_disabled_key_is_refused(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    record, key = await new_key(runtime)
    bearer = await token_of(http, key)
    await runtime.api_keys.disable(record.id)
    response = await http.get("/api/orders/1", headers=bearer)
    assert response.status_code == 401
    await runtime.api_keys.enable(record.id)
    assert (await status_within(http, "/api/orders/1", bearer, 200)).status_code == 200


async def test_a_cached_token_ends_with_its_signing_key(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    _, key = await new_key(runtime)
    bearer = await token_of(http, key)
    assert (await http.get("/api/orders/1", headers=bearer)).status_code == 200
    old = runtime.signing_keys.current().kid
    await runtime.signing_keys.rotate(immediate=True)
    assert (await http.get("/api/orders/1", headers=bearer)).status_code == 200  # still published
    await runtime.signing_keys.retire(old)
    response = await status_within(http, "/api/orders/1", bearer, 401)
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"


async def test_routes_reload_applies_a_new_jwt_audience(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path, echo: EchoThread
) -> None:
    _, key = await new_key(runtime)
    bearer = await token_of(http, key, resource=REPORTS)
    assert (await http.get("/api/reports/1", headers=bearer)).status_code == 200
    moved = make_settings(
        tmp_path, routes=routes(echo.server.url, "https://reports-v2.example.com")
    )
    runtime.reload_routes(moved)
    response = await http.get("/api/reports/1", headers=bearer)
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"
    fresh = await token_of(http, key, resource="https://reports-v2.example.com")
    assert (await http.get("/api/reports/1", headers=fresh)).status_code == 200
