"""GET /metrics on the main port and on the listener app: who may scrape, and what they get."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from http_support import make_runtime, make_settings
from pydantic import SecretStr

from bastion.http.app import create_app
from bastion.http.endpoints.metrics import metrics_listener_app, metrics_routes
from bastion.observability.metrics import Metrics

TOKEN = "s3cret-scrape-token-0123456789"
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def _runtime(
    *, token: str | None = None, listen: Any = None, enabled: bool = True, proxies: Any = ()
) -> Any:
    settings = make_settings()
    settings.trusted_proxies = list(proxies)
    settings.metrics = SimpleNamespace(
        enabled=enabled, listen=listen, token=SecretStr(token) if token else None
    )
    metrics = Metrics(version="1.2.3", process=False)
    metrics.gateway_request("orders", None, 0.001)
    return make_runtime(settings=settings, metrics=metrics)


def _client(app: Any, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="https://testserver")


def _main_app(runtime: Any) -> Any:
    return create_app(runtime, routes=metrics_routes(runtime))


async def test_loopback_client_scrapes_without_a_token() -> None:
    runtime = _runtime()
    async with _client(_main_app(runtime)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == TEXT
    assert response.headers["cache-control"] == "no-store"
    assert 'bastion_gateway_requests_total{outcome="allowed",route="orders"} 1.0' in response.text
    assert 'bastion_build_info{python="' in response.text


@pytest.mark.parametrize("peer", ["::1", "127.0.0.5"])
async def test_every_loopback_address_counts(peer: str) -> None:
    async with _client(_main_app(_runtime()), peer) as http:
        assert (await http.get("/metrics")).status_code == 200


async def test_remote_client_without_token_configured_is_forbidden() -> None:
    async with _client(_main_app(_runtime()), "203.0.113.9") as http:
        response = await http.get("/metrics")
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["reason"] == "metrics_forbidden"
    assert body["detail"] == (
        "Metrics are served on this port only to local clients — set metrics.token to "
        "scrape from elsewhere, or metrics.listen for a listener of their own."
    )


async def test_loopback_peer_that_is_a_trusted_proxy_is_forbidden() -> None:
    runtime = _runtime(proxies=["127.0.0.1"])
    async with _client(_main_app(runtime)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 403
    assert response.json()["reason"] == "metrics_forbidden"


@pytest.mark.parametrize("peer", ["127.0.0.1", "203.0.113.9"])
async def test_token_is_required_from_everyone_when_configured(peer: str) -> None:
    app = _main_app(_runtime(token=TOKEN))
    async with _client(app, peer) as http:
        missing = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        empty = await http.get("/metrics", headers={"Authorization": "Bearer "})
        basic = await http.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
        good = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401
    assert missing.json()["reason"] == "metrics_unauthorized"
    assert missing.json()["detail"] == (
        "Scraping needs the metrics token: send Authorization: Bearer <metrics.token>."
    )
    assert missing.headers["www-authenticate"] == 'Bearer realm="bastion-metrics"'
    for refused in (wrong, empty, basic):
        assert refused.status_code == 401
        assert refused.json()["detail"] == "The metrics token is not valid."
        assert TOKEN not in refused.text
    assert good.status_code == 200
    assert "bastion_gateway_requests_total" in good.text


async def test_head_and_method_not_allowed() -> None:
    async with _client(_main_app(_runtime())) as http:
        head = await http.head("/metrics")
        post = await http.post("/metrics")
    assert head.status_code == 200
    assert post.status_code == 405
    assert post.json()["reason"] == "method_not_allowed"


@pytest.mark.parametrize(
    "runtime_kw", [{"enabled": False}, {"listen": SimpleNamespace(host="127.0.0.1", port=9464)}]
)
async def test_main_port_has_no_metrics_when_disabled_or_on_their_own_listener(
    runtime_kw: dict[str, Any],
) -> None:
    runtime = _runtime(**runtime_kw)
    assert metrics_routes(runtime) == []
    async with _client(_main_app(runtime)) as http:
        response = await http.get("/metrics")
    assert response.status_code == 404
    assert response.json()["reason"] == "not_found"


async def test_openmetrics_is_negotiated() -> None:
    async with _client(_main_app(_runtime())) as http:
        response = await http.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_listener_app_serves_only_metrics_and_anyone_without_a_token() -> None:
    runtime = _runtime(listen=SimpleNamespace(host="0.0.0.0", port=9464))
    async with _client(metrics_listener_app(runtime), "203.0.113.9") as http:
        scrape = await http.get("/metrics")
        other = await http.get("/healthz")
        post = await http.post("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"] == TEXT
    assert scrape.headers["x-request-id"]
    assert other.status_code == 404
    assert other.json()["reason"] == "not_found"
    assert post.status_code == 405
    assert post.headers["allow"] == "GET, HEAD"


async def test_listener_app_requires_the_token_when_configured() -> None:
    runtime = _runtime(token=TOKEN, listen=SimpleNamespace(host="127.0.0.1", port=9464))
    async with _client(metrics_listener_app(runtime)) as http:
        missing = await http.get("/metrics")
        good = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401
    assert missing.json()["reason"] == "metrics_unauthorized"
    assert good.status_code == 200
