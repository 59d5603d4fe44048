"""Every gateway request is counted on /metrics: route, outcome and duration.

Black-box, against a real ``bastion serve``: ``bastion_gateway_requests_total{route,outcome}``,
``bastion_gateway_request_duration_seconds`` and ``bastion_upstream_errors_total`` as a scrape
shows them (both planes' counts merged into one series). Counts are cumulative over the
module's server, so each test compares a scrape before with one after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _support import EchoThread
from _support.gateway_edge import metric, problem
from _support.gateway_server import GatewayServer, dead_url, gateway_fixture, serve_gateway

#: The route label of a request no route matched (``bastion.observability.metrics.NO_ROUTE``).
NO_ROUTE = "(none)"

ROUTES = (
    "  - name: pub\n    match: {path: /pub}\n    upstream: {echo}\n    public: true\n"
    "  - name: priv\n    match: {path: /priv}\n    upstream: {echo}\n    auth: [jwt]\n"
    f"  - name: dead\n    match: {{path: /dead}}\n    upstream: {dead_url()}\n    public: true\n"
)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


served = gateway_fixture(ROUTES, "")


def _delta(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _duration(server: GatewayServer, route: str) -> tuple[float, float]:
    samples = {
        (labels, suffix): value
        for suffix in ("count", "sum")
        for labels, value in metric(
            server, f"bastion_gateway_request_duration_seconds_{suffix}"
        ).items()
    }
    key = (("route", route),)
    return samples.get((key, "count"), 0.0), samples.get((key, "sum"), 0.0)


def test_requests_are_counted_by_route_and_outcome(served: GatewayServer) -> None:
    before, (count, total) = served.counts(), _duration(served, "pub")
    with served.client() as client:
        assert client.get("/pub/a").status_code == 200
        assert client.get("/pub/b").status_code == 200
        assert problem(client.get("/priv/x"))[:2] == (401, "unauthenticated")
        assert problem(client.get("/nowhere"))[:2] == (404, "route_not_found")
    assert _delta(before, served.counts()) == {
        ("pub", "allowed"): 2,
        ("priv", "unauthenticated"): 1,
        (NO_ROUTE, "route_not_found"): 1,
    }
    count_after, total_after = _duration(served, "pub")
    assert count_after - count == 2
    assert total_after > total


def test_upstream_failure_is_an_upstream_error(served: GatewayServer) -> None:
    before = served.counts()
    errors = metric(served, "bastion_upstream_errors_total")
    with served.client() as client:
        response = client.get("/dead")
    assert problem(response)[:2] == (502, "upstream_unavailable")
    assert _delta(before, served.counts()) == {("dead", "upstream_error"): 1}
    key = (("reason", "upstream_unavailable"), ("route", "dead"))
    assert metric(served, "bastion_upstream_errors_total")[key] - errors.get(key, 0) == 1


def test_without_metrics_nothing_is_counted(tmp_path: Path, echo_upstream: EchoThread) -> None:
    routes = f"  - name: pub\n    match: {{path: /pub}}\n    upstream: {echo_upstream.server.url}\n"
    settings = "metrics: {enabled: false}\n"
    with (
        serve_gateway(tmp_path, routes + "    public: true\n", settings) as server,
        server.client() as client,
    ):
        assert client.get("/pub").status_code == 200
        scrape = client.get("/metrics")
        assert scrape.status_code == 404
        assert b"bastion_gateway_requests_total" not in scrape.content
