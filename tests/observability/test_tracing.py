"""Gateway spans (observability/tracing.py): the tracer's own rules, and tracing off over real HTTP.

The spans of served requests (names, attributes, traceparent handling, refusals, reloads)
are tested end to end in ``tests/features/tracing`` (an OTLP receiver behind ``bastion
serve``); here: the batch flush, the missing extra, the native span records as spans, and
that with tracing off the upstream sees the client's trace headers untouched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from _support import EchoThread
from _support.gateway_server import serve_gateway
from bastion.observability.tracing import GatewayTracer, TracingUnavailableError

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def test_without_tracing_the_upstream_sees_the_client_trace_headers(tmp_path: Path) -> None:
    echo = EchoThread()
    try:
        routes = f"  - name: pub\n    match: {{path: /pub}}\n    upstream: {echo.server.url}\n"
        routes += "    public: true\n"
        settings = "tls: off\ntrusted_proxies: [192.0.2.1]\n"
        with serve_gateway(tmp_path, routes, settings) as server, server.client() as http:
            response = http.get(
                "/pub/x", headers={"traceparent": CLIENT_PARENT, "tracestate": "vendor=abc"}
            )
        assert response.status_code == 200
        headers = response.json()["headers"]
        assert (headers["traceparent"], headers["tracestate"]) == (CLIENT_PARENT, "vendor=abc")
    finally:
        echo.close()


def test_shutdown_flushes_the_batch(exporter: InMemorySpanExporter) -> None:
    tracer = GatewayTracer(exporter)  # batched, as served
    span = tracer._tracer.start_span("probe")
    span.end()
    tracer.shutdown()
    tracer.shutdown()  # idempotent
    assert [s.name for s in exporter.get_finished_spans()] == ["probe"]


def test_missing_packages_name_the_extra(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    monkeypatch.setattr("bastion.observability.tracing.tracing_installed", lambda: False)
    with pytest.raises(TracingUnavailableError) as info:
        GatewayTracer(exporter)
    assert info.value.code == "tracing_unavailable"
    assert str(info.value) == (
        "tracing.enabled is true but OpenTelemetry is not installed — run "
        "`pip install 'bastion[tracing]'`, or set tracing.enabled to false"
    )


def test_native_records_become_the_spans_python_makes(exporter: InMemorySpanExporter) -> None:
    """``record_native``: the record's ids, parent, times; Python's name, kind, attributes."""
    tracer = GatewayTracer(exporter, sample_ratio=0.0, batch=False)  # the native core sampled
    trace_id, parent = int(CLIENT_TRACE, 16), 0xB7AD6B7169203331
    tracer.record_native(
        [
            (trace_id, 0x1111, (parent, 0x01), "vendor=abc,other=1", 1_000, 2_000, "pub",
             "GET", "/pub/a", "allowed", 200, None),
            (0x2222 << 64 | 0x3333, 0x4444, None, None, 3_000, 4_000, "dead",
             "POST", "/dead/x", "upstream_unavailable", 502, None),
            # A forward-auth decision: the judged request's method, route and path.
            (0x5555, 0x6666, None, None, 5_000, 6_000, "pub",
             "DELETE", "/pub/b", "insufficient_scope", 403, "forward_auth"),
            # Allowed: no status (Python's span ends before the endpoint sends its 200).
            (0x9999, 0xAAAA, None, None, 9_000, 9_500, "pub",
             "GET", "/pub/c", "allowed", 0, "forward_auth"),
            # Refused before any route (its own step): no route, no path.
            (0x7777, 0x8888, None, None, 7_000, 8_000, None,
             "GET", "", "forward_auth_untrusted", 403, "forward_auth"),
        ]
    )  # fmt: skip
    tracer.shutdown()
    joined, fresh, decided, allowed, untrusted = exporter.get_finished_spans()
    # As Python's own forward-auth span (GatewayTracer._finish sets the judged method again,
    # after the door).
    assert decided.name == "gateway pub"
    assert list((decided.attributes or {}).items()) == [
        ("bastion.route", "pub"),
        ("url.path", "/pub/b"),
        ("bastion.door", "forward_auth"),
        ("http.request.method", "DELETE"),
        ("bastion.outcome", "insufficient_scope"),
        ("http.response.status_code", 403),
    ]
    assert list((allowed.attributes or {}).items()) == [
        ("bastion.route", "pub"),
        ("url.path", "/pub/c"),
        ("bastion.door", "forward_auth"),
        ("http.request.method", "GET"),
        ("bastion.outcome", "allowed"),
    ]
    assert untrusted.name == "gateway"
    assert list((untrusted.attributes or {}).items()) == [
        ("bastion.door", "forward_auth"),
        ("http.request.method", "GET"),
        ("bastion.outcome", "forward_auth_untrusted"),
        ("http.response.status_code", 403),
    ]
    assert joined.name == "gateway pub" and joined.kind is SpanKind.SERVER
    assert dict(joined.attributes or {}) == {
        "http.request.method": "GET",
        "bastion.route": "pub",
        "url.path": "/pub/a",
        "bastion.outcome": "allowed",
        "http.response.status_code": 200,
    }
    assert list(joined.attributes or {}) == list(dict(joined.attributes or {}))
    assert (joined.context.trace_id, joined.context.span_id) == (trace_id, 0x1111)
    assert joined.parent is not None and joined.parent.span_id == parent
    assert joined.parent.is_remote
    assert joined.context.trace_flags == 0x01  # sampled; the parent's random flag (unset)
    assert joined.context.trace_state.to_header() == "vendor=abc,other=1"
    assert (joined.start_time, joined.end_time) == (1_000, 2_000)
    assert joined.status.status_code is StatusCode.UNSET
    assert fresh.name == "gateway dead" and fresh.parent is None
    assert (fresh.context.trace_id, fresh.context.span_id) == (0x2222 << 64 | 0x3333, 0x4444)
    assert fresh.context.trace_flags == 0x03  # sampled, random trace id: as a Python root
    assert fresh.attributes is not None
    assert fresh.attributes["bastion.outcome"] == "upstream_unavailable"
    assert fresh.status.status_code is StatusCode.ERROR
    assert (fresh.start_time, fresh.end_time) == (3_000, 4_000)
