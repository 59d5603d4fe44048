"""End to end: a real ``bastion serve``, real requests through its gateway, real scrapes.

Scrapes are parsed with prometheus_client's own parser and the counters
asserted exactly. Two set-ups: ``/metrics`` on the main port (no token: local
clients only), and a listener of its own with a scrape token (the main port
then answers 404).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _support import BastionProcess, EchoThread, free_port
from bastion.crypto import generate_api_key

TOKEN = "e2e-metrics-token-0123456789abcdef"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


def _routes(upstream: str) -> str:
    return (
        "routes:\n"
        "  - name: pub\n"
        "    match: {path: /pub}\n"
        f"    upstream: {upstream}\n"
        "    public: true\n"
        "  - name: priv\n"
        "    match: {path: /priv}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        "  - name: lim\n"
        "    match: {path: /lim}\n"
        f"    upstream: {upstream}\n"
        "    public: true\n"
        "    limits: [{per: ip, rate: 1/minute}]\n"
    )


def _parse(text: str) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_gateway_traffic_is_counted_and_scraped_on_the_main_port(
    tmp_path: Path, echo: EchoThread
) -> None:
    (tmp_path / "bastion.yaml").write_text(_routes(echo.server.url))
    proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path)
    with proc, httpx.Client(base_url=proc.url, verify=False, timeout=10) as http:
        assert http.get("/pub/a").status_code == 200
        assert http.post("/pub/b", content=b"x").status_code == 200
        assert http.get("/pub/c").status_code == 200
        assert http.get("/priv/x").status_code == 401
        # Well formed, never stored: refused after its lookup, then from the native
        # plane's cache: each refusal counted once.
        bad_key = {"Authorization": f"Bearer {generate_api_key()}"}
        assert http.get("/priv/y", headers=bad_key).status_code == 401
        native = [http.get(f"/priv/z{n}", headers=bad_key) for n in range(2)]
        assert [r.status_code for r in native] == [401, 401]
        assert http.get("/lim").status_code == 200
        assert http.get("/lim").status_code == 429
        assert http.get("/lim").status_code == 429
        assert http.get("/nothing-here").status_code == 404
        scrape = http.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    found = _parse(scrape.text)
    total = "bastion_gateway_requests_total"
    assert _value(found, total, route="pub", outcome="allowed") == 3
    assert _value(found, total, route="priv", outcome="unauthenticated") == 1
    assert _value(found, total, route="priv", outcome="invalid_api_key") == 3
    assert _value(found, total, route="lim", outcome="allowed") == 1
    assert _value(found, total, route="lim", outcome="rate_limited") == 2
    assert _value(found, total, route="(none)", outcome="route_not_found") == 1
    assert sum(v for (n, _), v in found.items() if n == total) == 11
    assert _value(found, "bastion_rate_limited_total", route="lim") == 2
    assert _value(found, "bastion_rate_limited_total", route="pub") == 0
    duration = "bastion_gateway_request_duration_seconds"
    assert _value(found, f"{duration}_count", route="pub") == 3
    assert _value(found, f"{duration}_bucket", route="pub", le="+Inf") == 3
    failures = "bastion_auth_failures_total"
    assert _value(found, failures, method="gateway", reason="unauthenticated") == 1
    assert _value(found, failures, method="api_key", reason="invalid_api_key") == 3
    idle = "bastion_upstream_idle_connections"
    assert _value(found, idle, upstream=echo.server.url.rstrip("/")) is not None
    assert _value(found, "bastion_audit_queue_depth") is not None
    assert _value(found, "process_resident_memory_bytes") is not None
    assert [n for (n, labels) in found if n == "bastion_build_info"] == ["bastion_build_info"]


def test_separate_listener_with_a_token(tmp_path: Path, echo: EchoThread) -> None:
    port = free_port()
    (tmp_path / "bastion.yaml").write_text(
        _routes(echo.server.url)
        + f"metrics:\n  listen: {{host: 127.0.0.1, port: {port}}}\n  token: env:SCRAPE_TOKEN\n"
    )
    with BastionProcess("-c", "bastion.yaml", cwd=tmp_path, env={"SCRAPE_TOKEN": TOKEN}) as proc:
        notices = [e.get("message", "") for e in proc.events if e.get("event") == "notice"]
        assert f"metrics: served only at http://127.0.0.1:{port}/metrics" in notices
        with httpx.Client(base_url=proc.url, verify=False, timeout=10) as http:
            assert http.get("/pub/a").status_code == 200
            main = http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert main.status_code == 404
        assert main.json()["reason"] == "not_found"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as scraper:
            missing = scraper.get("/metrics")
            wrong = scraper.get("/metrics", headers={"Authorization": "Bearer wrong"})
            good = scraper.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            elsewhere = scraper.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401
    assert missing.json()["reason"] == "metrics_unauthorized"
    assert missing.headers["www-authenticate"] == 'Bearer realm="bastion-metrics"'
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "The metrics token is not valid."
    assert good.status_code == 200
    found = _parse(good.text)
    assert _value(found, "bastion_gateway_requests_total", route="pub", outcome="allowed") == 1
    assert elsewhere.status_code == 404
    assert TOKEN not in proc.stderr
