"""Exchanged tokens at the gateway act as their key: audiences, limits, routes, revocation.

A real ``bastion serve`` (the native core decides every gateway request) with gateway routes
to a real echo upstream; keys and signing keys are changed with the CLI (another process,
followed by the server through its change feed), the RFC 8693 exchange is the server's own
``/oauth2/token``, and routes are reloaded with ``bastion routes reload``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import EchoThread, run_cli
from _support.gateway_server import GatewayServer, route, serve_gateway
from _support.native import feed_changes, until_feed_past
from bastion.apikeys import token_exchange
from bastion.http.endpoints.admin import KEYS_PATH, admin_audience
from bastion.protocol import rfc8693

TOKEN = "/oauth2/token"
REPORTS = "https://reports.example.com"
REPORTS_V2 = "https://reports-v2.example.com"


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


def routes(upstream: str, reports_audience: str = REPORTS) -> str:
    return (
        route("orders", upstream, path="/api/orders", auth=["api_key", "jwt"])
        + route("catalog", upstream, path="/api/catalog", auth=["jwt"])
        + route(
            "reports",
            upstream,
            path="/api/reports",
            auth=["jwt"],
            jwt={"audience": reports_audience},
        )
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, echo: EchoThread) -> Iterator[GatewayServer]:
    with serve_gateway(tmp_path_factory.mktemp("exchange"), routes(echo.server.url)) as served:
        yield served


@pytest.fixture
def http(server: GatewayServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def issuer_of(http: httpx.Client) -> str:
    discovery = http.get("/.well-known/oauth-authorization-server")
    assert discovery.status_code == 200
    issuer: str = discovery.json()["issuer"]
    return issuer


def new_key(server: GatewayServer, *options: str) -> dict[str, Any]:
    """A key created with the CLI (``id`` and ``key``), once the server followed it."""
    before = feed_changes(server.url)
    key: dict[str, Any] = server.cli("keys", "create", "svc", *options)
    until_feed_past(server.url, before)
    return key


def key_cli(server: GatewayServer, *args: str) -> None:
    """``bastion keys ARGS``, returning once the server has followed the change."""
    before = feed_changes(server.url)
    server.cli("keys", *args)
    until_feed_past(server.url, before)


def exchange(http: httpx.Client, key: str, **extra: str) -> httpx.Response:
    return http.post(
        TOKEN,
        data={
            "grant_type": rfc8693.GRANT_TYPE,
            "subject_token": key,
            "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
            **extra,
        },
    )


def token_of(http: httpx.Client, key: str, **extra: str) -> dict[str, str]:
    response = exchange(http, key, **extra)
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def status_within(
    http: httpx.Client, path: str, headers: dict[str, str], status: int, seconds: float = 2
) -> httpx.Response:
    """The first response with ``status`` within ``seconds`` (the feed delivers a change made
    by another process asynchronously)."""
    deadline = time.monotonic() + seconds
    while True:
        response = http.get(path, headers=headers)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


# -- 4. audiences ---------------------------------------------------------------------


@pytest.mark.parametrize("routes_of_key", [[], ["orders"], ["admin-api-as-route"]])
def test_the_admin_audience_is_never_obtainable(
    server: GatewayServer, http: httpx.Client, routes_of_key: list[str]
) -> None:
    admin = admin_audience(issuer_of(http))
    keyroutes = [admin if name == "admin-api-as-route" else name for name in routes_of_key]
    options = ["--scope", "bastion:admin"]
    for name in keyroutes:
        options += ["--route", name]
    key = new_key(server, *options)["key"]
    for target in ({"resource": admin}, {"audience": admin}):
        response = exchange(http, key, **target)
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_target",
            "error_description": f"the API key may not obtain a token for '{admin}'",
        }
    # Nor does the default token get in.
    bearer = token_of(http, key)
    refused = http.get(KEYS_PATH, headers=bearer)
    assert refused.status_code == 401
    assert refused.json()["reason"] == "invalid_token"


def test_audiences_are_those_of_the_key_routes(server: GatewayServer, http: httpx.Client) -> None:
    issuer = issuer_of(http)
    anywhere = new_key(server)["key"]
    orders_only = new_key(server, "--route", "orders")["key"]
    # A key without routes: the issuer or any route's audience, nothing else.
    reports = token_of(http, anywhere, resource=REPORTS)
    assert http.get("/api/reports/1", headers=reports).status_code == 200
    for stranger in ("https://evil.example.com/", "https://api.example.com/orders"):
        response = exchange(http, anywhere, resource=stranger)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_target"
    # A key for "orders" only: not the reports audience.
    response = exchange(http, orders_only, resource=REPORTS)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"
    orders = token_of(http, orders_only, resource=issuer)
    assert http.get("/api/orders/1", headers=orders).status_code == 200
    # The issuer audience is accepted by "catalog" too, but the token acts as its key,
    # which may call "orders" only.
    response = http.get("/api/catalog/1", headers=orders)
    assert response.status_code == 403
    assert response.json()["reason"] == "route_not_allowed"


# -- 5. limits, IP allow-lists, the exchange rate ----------------------------------------


def test_the_key_limits_apply_to_its_tokens(server: GatewayServer, http: httpx.Client) -> None:
    key = new_key(server, "--rate-limit", "2/minute")["key"]
    bearer = token_of(http, key)
    statuses = [http.get("/api/orders/1", headers=bearer).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    # One bucket for the key, whichever way it is presented.
    direct = http.get("/api/orders/1", headers={"authorization": f"Bearer {key}"})
    assert direct.status_code == 429
    # A second token of the same key draws from the same bucket.
    again = http.get("/api/orders/1", headers=token_of(http, key))
    assert again.status_code == 429
    assert again.json()["reason"] == "rate_limited"


def test_a_key_with_an_ip_allow_list_is_not_exchanged(
    server: GatewayServer, http: httpx.Client
) -> None:
    key = new_key(server, "--ip-allow", "127.0.0.0/8")["key"]
    # Allowed from this address at the gateway …
    direct = http.get("/api/orders/1", headers={"authorization": f"Bearer {key}"})
    assert direct.status_code == 200
    # … but a bearer token could be used from anywhere: refused.
    response = exchange(http, key)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "an API key restricted to IP addresses "
        "cannot be exchanged for a token",
    }


def test_exchanges_are_throttled_per_key(tmp_path: Path, echo: EchoThread) -> None:
    settings = "api_keys:\n  exchange_rate: 2/minute\n"
    with serve_gateway(tmp_path, routes(echo.server.url), settings) as rated:
        key = new_key(rated)["key"]
        other = new_key(rated)["key"]
        with rated.client() as http:
            assert [exchange(http, key).status_code for _ in range(2)] == [200, 200]
            response = exchange(http, key)
            assert response.status_code == 429
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["error"] == "rate_limited"
            assert exchange(http, other).status_code == 200  # per key


# -- 6. the verified-token cache follows keys, signing keys and routes ------------------


@pytest.mark.parametrize("change", ["revoke", "disable", "delete"])
def test_a_cached_token_ends_with_its_key(
    server: GatewayServer, http: httpx.Client, change: str
) -> None:
    record = new_key(server)
    bearer = token_of(http, record["key"])
    assert http.get("/api/orders/1", headers=bearer).status_code == 200  # cached now
    server.cli("keys", change, record["id"], *(["--yes"] if change == "delete" else []))
    response = status_within(http, "/api/orders/1", bearer, 401)
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"


def test_an_uncached_token_of_a_disabled_key_is_refused(
    server: GatewayServer, http: httpx.Client
) -> None:
    record = new_key(server)
    bearer = token_of(http, record["key"])
    key_cli(server, "disable", record["id"])
    response = http.get("/api/orders/1", headers=bearer)
    assert response.status_code == 401
    key_cli(server, "enable", record["id"])
    assert status_within(http, "/api/orders/1", bearer, 200).status_code == 200


def test_a_cached_token_ends_with_its_signing_key(
    server: GatewayServer, http: httpx.Client
) -> None:
    key = new_key(server)["key"]
    bearer = token_of(http, key)
    assert http.get("/api/orders/1", headers=bearer).status_code == 200
    listed = server.cli("signing-keys", "list")["keys"]
    old = next(k["kid"] for k in listed if k["state"] == "active")
    server.cli("signing-keys", "rotate", "--now")
    assert http.get("/api/orders/1", headers=bearer).status_code == 200  # still published
    # A kid may begin with "-": it goes after "--", the options before.
    retired = run_cli(
        "signing-keys", "retire", "-c", str(server.config), "--", old, cwd=server.config.parent
    )
    assert retired.returncode == 0, retired.stderr
    response = status_within(http, "/api/orders/1", bearer, 401)
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"
    # The server signs with the new key once it followed the rotation: its tokens get in.
    fresh = status_within(http, "/api/orders/1", token_of(http, key), 200)
    assert fresh.status_code == 200


def test_routes_reload_applies_a_new_jwt_audience(tmp_path: Path, echo: EchoThread) -> None:
    with serve_gateway(tmp_path, routes(echo.server.url)) as served, served.client() as http:
        key = new_key(served)["key"]
        bearer = token_of(http, key, resource=REPORTS)
        assert http.get("/api/reports/1", headers=bearer).status_code == 200
        served.config.write_text(
            f"storage: sqlite:///{tmp_path}/bastion.db\n"
            f"routes:\n{routes(echo.server.url, REPORTS_V2)}"
        )
        reloaded = run_cli("routes", "reload", "-c", str(served.config), cwd=tmp_path)
        assert reloaded.returncode == 0, reloaded.stderr
        # The reload is a signal the server acts on asynchronously.
        response = status_within(http, "/api/reports/1", bearer, 401, seconds=10)
        assert response.status_code == 401
        assert response.json()["reason"] == "invalid_token"
        fresh = token_of(http, key, resource=REPORTS_V2)
        assert http.get("/api/reports/1", headers=fresh).status_code == 200
