"""bastion.observability.metrics: what moves which counter, folding, bounds, and the exposition."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bastion.audit.events import Auditor, EventTypes
from bastion.errors import BastionError
from bastion.gateway.authn.jwt import InvalidBearerTokenError
from bastion.gateway.errors import (
    RouteNotFoundError,
    UnauthenticatedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from bastion.gateway.limit import RateLimiterUnavailableError
from bastion.observability.metrics import GATEWAY_BUCKETS, NO_ROUTE, OTHER, Metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Metrics) -> Samples:
    """Every sample of the text exposition, keyed by (name, sorted labels)."""
    body, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    found: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


class _Weird(BastionError):
    code = "totally_new_code"


class _Limited(BastionError):  # RateLimitedError's code, without building a limiter result
    code = "rate_limited"


def test_gateway_requests_by_route_and_outcome() -> None:
    metrics = Metrics(process=False)
    metrics.gateway_request("orders", None, 0.002)
    metrics.gateway_request("orders", None, 0.004)
    metrics.gateway_request("orders", UnauthenticatedError(), 0.0001)
    metrics.gateway_request(None, RouteNotFoundError(), 0.0001)
    found = samples(metrics)
    total = "bastion_gateway_requests_total"
    assert value(found, total, route="orders", outcome="allowed") == 2
    assert value(found, total, route="orders", outcome="unauthenticated") == 1
    assert value(found, total, route=NO_ROUTE, outcome="route_not_found") == 1
    # the gateway's authentication denials are auth failures too (derived, not counted twice)
    assert (
        value(found, "bastion_auth_failures_total", method="gateway", reason="unauthenticated") == 1
    )


def test_a_key_in_the_query_string_is_an_api_key_auth_failure() -> None:
    from bastion.apikeys import ApiKeyInQueryError

    metrics = Metrics(process=False)
    metrics.gateway_request("orders", ApiKeyInQueryError(), 0.0001)
    found = samples(metrics)
    total = "bastion_gateway_requests_total"
    assert value(found, total, route="orders", outcome="api_key_in_query") == 1
    failures = "bastion_auth_failures_total"
    assert value(found, failures, method="api_key", reason="api_key_in_query") == 1


def test_latency_histogram_buckets_are_cumulative_with_sum_and_count() -> None:
    metrics = Metrics(process=False)
    for seconds in (0.0004, 0.0005, 0.003, 0.2, 42.0):
        metrics.gateway_request("r", None, seconds)
    found = samples(metrics)
    name = "bastion_gateway_request_duration_seconds"
    assert value(found, f"{name}_bucket", route="r", le="0.0005") == 2  # 0.5 ms is <= 0.5 ms
    assert value(found, f"{name}_bucket", route="r", le="0.005") == 3
    assert value(found, f"{name}_bucket", route="r", le="0.25") == 4
    assert value(found, f"{name}_bucket", route="r", le="10.0") == 4
    assert value(found, f"{name}_bucket", route="r", le="+Inf") == 5
    assert value(found, f"{name}_count", route="r") == 5
    assert value(found, f"{name}_sum", route="r") == pytest.approx(42.2039)
    les = sorted(
        float(dict(labels)["le"])
        for (sample, labels) in found
        if sample == f"{name}_bucket" and dict(labels)["le"] != "+Inf"
    )
    assert les == list(GATEWAY_BUCKETS)


def test_rate_limited_and_upstream_errors() -> None:
    metrics = Metrics(process=False)
    refusal = _Limited()
    metrics.gateway_request("api", refusal, 0.0001)
    metrics.gateway_request("api", refusal, 0.0001)
    metrics.gateway_request("api", RateLimiterUnavailableError(), 0.0001)
    metrics.gateway_request("api", UpstreamUnavailableError(), 0.001)
    metrics.gateway_request("api", UpstreamTimeoutError(), 30.0)
    found = samples(metrics)
    assert value(found, "bastion_rate_limited_total", route="api") == 2
    total = "bastion_gateway_requests_total"
    assert value(found, total, route="api", outcome="rate_limited") == 2
    assert value(found, total, route="api", outcome="rate_limiter_unavailable") == 1
    assert value(found, total, route="api", outcome="upstream_error") == 2
    errors = "bastion_upstream_errors_total"
    assert value(found, errors, route="api", reason="upstream_unavailable") == 1
    assert value(found, errors, route="api", reason="upstream_timeout") == 1


def test_unexpected_errors_and_cancellations_have_fixed_outcomes() -> None:
    metrics = Metrics(process=False)
    metrics.gateway_request("r", RuntimeError("boom 203.0.113.9"), 0.1)
    metrics.gateway_request("r", asyncio.CancelledError(), 0.1)
    found = samples(metrics)
    total = "bastion_gateway_requests_total"
    assert value(found, total, route="r", outcome="error") == 1
    assert value(found, total, route="r", outcome="cancelled") == 1


def test_unknown_reason_codes_fold_into_other() -> None:
    metrics = Metrics(process=False)
    error = BastionError()
    error.code = "made_up_by_someone"  # an instance-level code no error class declares
    metrics.gateway_request("r", error, 0.001)
    auditor = Auditor()
    metrics.attach(auditor)
    auditor.record(EventTypes.LOGIN, "failure", reason="user alice@example.com from 10.0.0.1")
    auditor.record(EventTypes.TOKEN_REFUSED, "denied", reason="not-a-code")
    auditor.record(EventTypes.TOKEN_REFUSED, "denied", reason=None)
    found = samples(metrics)
    assert value(found, "bastion_gateway_requests_total", route="r", outcome=OTHER) == 1
    assert value(found, "bastion_auth_failures_total", method="login", reason=OTHER) == 1
    assert value(found, "bastion_tokens_refused_total", error=OTHER) == 2
    text = metrics.render()[0].decode()
    assert "alice" not in text and "10.0.0.1" not in text and "made_up" not in text


def test_codes_of_error_classes_are_known_without_listing_them() -> None:
    metrics = Metrics(process=False)
    metrics.gateway_request("r", _Weird(), 0.001)  # defined before the Metrics was built
    metrics.gateway_request("r", InvalidBearerTokenError("expired"), 0.001)
    found = samples(metrics)
    assert (
        value(found, "bastion_gateway_requests_total", route="r", outcome="totally_new_code") == 1
    )
    assert value(found, "bastion_auth_failures_total", method="jwt", reason="invalid_token") == 1


def test_an_error_class_imported_after_start_up_is_counted_by_its_code() -> None:
    # As the app's endpoints (the forward-auth door's errors) are imported after the
    # metrics are built: counted by name from the first, as the native plane counts them.
    metrics = Metrics(process=False)

    class LateError(BastionError):
        code = "late_endpoint_error"

    metrics.gateway_request(None, LateError(), 0.001)
    again = BastionError()
    again.code = "still_made_up"
    metrics.gateway_request(None, again, 0.001)
    found = samples(metrics)
    total = "bastion_gateway_requests_total"
    assert value(found, total, route=NO_ROUTE, outcome="late_endpoint_error") == 1
    assert value(found, total, route=NO_ROUTE, outcome=OTHER) == 1


def test_audit_events_move_their_counters() -> None:
    auditor = Auditor()
    metrics = Metrics(process=False)
    unsubscribe = metrics.attach(auditor)
    auditor.record(EventTypes.LOGIN, "failure", reason="bad_password", subject="u1")
    auditor.record(EventTypes.LOGIN, "success", subject="u1")
    auditor.record(EventTypes.MFA, "failure", reason="bad_code")
    auditor.record(EventTypes.CLIENT_AUTH, "failure", reason="invalid_client", client_id="c1")
    auditor.record(EventTypes.TOKEN_ISSUED, "success", data={"grant_type": "client_credentials"})
    auditor.record(
        EventTypes.TOKEN_ISSUED,
        "success",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"},
    )
    auditor.record(EventTypes.TOKEN_ISSUED, "success", data={"grant_type": "password"})
    auditor.record(EventTypes.TOKEN_REFUSED, "denied", reason="invalid_grant")
    auditor.record(EventTypes.ALERT, "info", data={"type": "brute_force", "severity": "high"})
    auditor.record(EventTypes.ALERT, "info", reason="token_reuse", data={"severity": "critical"})
    auditor.record(EventTypes.ALERT, "info", data={"type": "Bad Type!", "severity": "nope"})
    # gateway denials are counted by the gateway itself, never from their events
    auditor.record(EventTypes.GATEWAY_DENIED, "denied", reason="rate_limited", route="r")
    found = samples(metrics)
    failures = "bastion_auth_failures_total"
    assert value(found, failures, method="login", reason="bad_password") == 1
    assert value(found, failures, method="mfa", reason="bad_code") == 1
    assert value(found, failures, method="client", reason="invalid_client") == 1
    issued = "bastion_tokens_issued_total"
    assert value(found, issued, grant_type="client_credentials") == 1
    assert value(found, issued, grant_type="token_exchange") == 1
    assert value(found, issued, grant_type=OTHER) == 1
    assert value(found, "bastion_tokens_refused_total", error="invalid_grant") == 1
    alerts = "bastion_alerts_total"
    assert value(found, alerts, type="brute_force", severity="high") == 1
    assert value(found, alerts, type="token_reuse", severity="critical") == 1
    assert value(found, alerts, type=OTHER, severity=OTHER) == 1
    assert value(found, "bastion_rate_limited_total", route="r") is None
    assert sum(v for (n, _), v in found.items() if n == failures) == 3
    unsubscribe()
    auditor.record(EventTypes.LOGIN, "failure", reason="bad_password")
    assert value(samples(metrics), failures, method="login", reason="bad_password") == 1


def test_alert_types_are_capped() -> None:
    auditor = Auditor()
    metrics = Metrics(process=False)
    metrics.attach(auditor)
    for index in range(100):
        auditor.record(EventTypes.ALERT, "info", data={"type": f"t{index}", "severity": "low"})
    found = samples(metrics)
    types = {dict(labels)["type"] for (n, labels) in found if n == "bastion_alerts_total"}
    assert len(types) == 65  # 64 distinct types, then "other"
    assert value(found, "bastion_alerts_total", type=OTHER, severity="low") == 36


def test_audit_queue_and_build_info() -> None:
    auditor = Auditor(max_queue=2)
    metrics = Metrics(version="9.9.9", process=False)
    metrics.attach(auditor)
    for _ in range(5):
        auditor.record(EventTypes.CONFIG, "info")
    found = samples(metrics)
    assert value(found, "bastion_audit_queue_depth") == 2
    assert value(found, "bastion_audit_events_dropped_total") == 3
    info = [labels for (n, labels) in found if n == "bastion_build_info"]
    assert len(info) == 1 and dict(info[0])["version"] == "9.9.9"


def test_change_feed_is_read_at_scrape_time() -> None:
    metrics = Metrics(version="9.9.9", process=False)
    follower = SimpleNamespace(healthy=True, delivered=7, last_read_age=0.2)
    metrics.watch_change_feed(follower)
    found = samples(metrics)
    assert value(found, "bastion_change_feed_healthy") == 1
    assert value(found, "bastion_change_feed_changes_total") == 7
    assert value(found, "bastion_change_feed_last_read_age_seconds") == 0.2
    follower.healthy = False
    assert value(samples(metrics), "bastion_change_feed_healthy") == 0


def test_upstream_pools_are_read_at_scrape_time() -> None:
    pool = SimpleNamespace(
        upstream=SimpleNamespace(scheme="http", host="orders.internal", port=9000),
        idle=[object(), object()],
        opened=7,
    )
    pools: dict[Any, Any] = {}
    metrics = Metrics(process=False)
    metrics.watch_upstreams(lambda: pools)
    assert value(samples(metrics), "bastion_upstream_idle_connections", upstream="x") is None
    pools["k"] = pool
    found = samples(metrics)
    up = "http://orders.internal:9000"
    assert value(found, "bastion_upstream_idle_connections", upstream=up) == 2
    assert value(found, "bastion_upstream_connections_opened_total", upstream=up) == 7


def test_upstream_target_failures_and_health() -> None:
    metrics = Metrics(process=False)
    metrics.upstream_failure("orders", "http://a:1")
    metrics.upstream_failure("orders", "http://a:1")
    metrics.upstream_state("orders", "http://a:1", False)
    metrics.upstream_state("orders", "http://b:1", True)
    found = samples(metrics)
    target = "bastion_upstream_target_failures_total"
    assert value(found, target, route="orders", target="http://a:1") == 2
    assert value(found, "bastion_upstream_target_up", route="orders", target="http://a:1") == 0
    assert value(found, "bastion_upstream_target_up", route="orders", target="http://b:1") == 1


def test_process_collectors_are_in_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # no "Duplicated timeseries" from a shared registry
    found = samples(first)
    assert value(found, "process_open_fds") is not None
    assert value(found, "python_info", **{k: v for k, v in _python_info(found)}) == 1
    assert second.registry is not first.registry


def _python_info(found: Samples) -> tuple[tuple[str, str], ...]:
    [labels] = [labels for (name, labels) in found if name == "python_info"]
    return labels


def test_openmetrics_when_asked() -> None:
    metrics = Metrics(process=False)
    metrics.gateway_request("r", None, 0.001)
    body, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    assert b'bastion_gateway_requests_total{outcome="allowed",route="r"} 1.0' in body
