"""The native data plane's counters in /metrics: added to Python's, one series per route."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bastion import _native
from bastion.audit.events import Auditor
from bastion.gateway.errors import UpstreamTimeoutError
from bastion.gateway.ip_rules import IpNotAllowedError
from bastion.observability.metrics import GATEWAY_BUCKETS, Metrics

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    found: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def test_same_buckets_as_python() -> None:
    assert tuple(_native.metrics_buckets()) == GATEWAY_BUCKETS


def test_native_counts_join_pythons_series() -> None:
    route = "native-metrics-join"  # the native counters are process-wide: a route of its own
    metrics = Metrics(process=False, auditor=Auditor())
    metrics.gateway_request(route, None, 0.002)
    metrics.gateway_request(route, UpstreamTimeoutError("slow"), 0.2)
    _native.metrics_record(route, None, 0.0004)
    _native.metrics_record(route, None, 0.002)
    _native.metrics_record(route, "rate_limited", 0.0001)
    _native.metrics_record(route, "upstream_timeout", 30.0)
    _native.metrics_record(route, "upstream_unavailable", 0.01)
    found = samples(metrics)
    requests = "bastion_gateway_requests_total"
    assert value(found, requests, route=route, outcome="allowed") == 3
    assert value(found, requests, route=route, outcome="rate_limited") == 1
    assert value(found, requests, route=route, outcome="upstream_error") == 3
    assert value(found, "bastion_rate_limited_total", route=route) == 1
    upstream = "bastion_upstream_errors_total"
    assert value(found, upstream, route=route, reason="upstream_timeout") == 2
    assert value(found, upstream, route=route, reason="upstream_unavailable") == 1
    histogram = "bastion_gateway_request_duration_seconds"
    assert value(found, f"{histogram}_bucket", route=route, le="0.0005") == 2
    assert value(found, f"{histogram}_bucket", route=route, le="0.0025") == 4
    assert value(found, f"{histogram}_bucket", route=route, le="0.25") == 6
    assert value(found, f"{histogram}_bucket", route=route, le="+Inf") == 7
    assert value(found, f"{histogram}_count", route=route) == 7
    total = value(found, f"{histogram}_sum", route=route)
    assert total is not None and abs(total - 30.2145) < 1e-6


def test_native_audit_drops_are_exported() -> None:
    metrics = Metrics(process=False, auditor=Auditor())
    allows, denials = _native.audit_dropped()
    found = samples(metrics)
    dropped = "bastion_native_audit_dropped_total"
    assert value(found, dropped, decision="allow") == allows
    assert value(found, dropped, decision="deny") == denials
    assert value(found, "bastion_native_audit_queue_depth") == _native.audit_pending()


def test_native_ip_refusals_are_counted_as_pythons() -> None:
    route = "native-metrics-ip"
    metrics = Metrics(process=False, auditor=Auditor())
    metrics.gateway_request(route, IpNotAllowedError("no"), 0.001)
    _native.metrics_record(route, "ip_not_allowed", 0.0001)
    found = samples(metrics)
    requests = "bastion_gateway_requests_total"
    assert value(found, requests, route=route, outcome="ip_not_allowed") == 2
    assert value(found, requests, route=route, outcome="other") is None
