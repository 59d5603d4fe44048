"""Gateway spans (audit/tracing.py): names, attributes, traceparent handling, off = no tracer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from bastion.audit.tracing import GatewayTracer, TracingUnavailableError
from bastion.demo.echo import EchoServer, start_echo_server
from bastion.gateway.errors import RouteNotFoundError, UnauthenticatedError
from bastion.gateway.pipeline import Gateway
from gateway.gateway_support import call, route

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_PARENT = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = await start_echo_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def _gateway(
    echo: EchoServer, exporter: InMemorySpanExporter, ratio: float = 1.0, **kw: object
) -> Gateway:
    tracer = GatewayTracer(exporter, sample_ratio=ratio, batch=False)
    return Gateway(
        [
            route("pub", "/pub", echo.url, public=True),
            route("priv", "/priv", echo.url, public=False, auth=["jwt"]),
            route("dead", "/dead", "http://127.0.0.1:9", public=True),
        ],
        tracer=tracer,
        **kw,  # type: ignore[arg-type]
    )


def _only(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, spans
    return spans[0]


async def test_allowed_request_span(echo: EchoServer, exporter: InMemorySpanExporter) -> None:
    gateway = _gateway(echo, exporter)
    result = await call(gateway, "GET", "/pub/a//b/../c", query=b"api_key=secret")
    await gateway.shutdown()
    assert result.status == 200
    span = _only(exporter)
    assert span.name == "gateway pub"
    assert span.kind is SpanKind.SERVER
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/pub/a/c",
        "bastion.route": "pub",
        "bastion.outcome": "allowed",
        "http.response.status_code": 200,
    }
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None
    assert span.resource.attributes["service.name"] == "bastion"


async def test_upstream_receives_the_spans_traceparent(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    gateway = _gateway(echo, exporter)
    result = await call(gateway, "GET", "/pub/x")
    await gateway.shutdown()
    span = _only(exporter)
    forwarded = result.json()["headers"]["traceparent"]
    trace_id = format(span.context.trace_id, "032x")
    span_id = format(span.context.span_id, "016x")
    flags = format(int(span.context.trace_flags), "02x")
    assert forwarded == f"00-{trace_id}-{span_id}-{flags}"
    assert int(flags, 16) & 1  # sampled


async def test_denial_span_carries_the_error_code(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    gateway = _gateway(echo, exporter)
    with pytest.raises(UnauthenticatedError):
        await call(gateway, "GET", "/priv/x")
    span = _only(exporter)
    assert span.name == "gateway priv"
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/priv/x",
        "bastion.route": "priv",
        "bastion.outcome": "unauthenticated",
        "http.response.status_code": 401,
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_no_route_span(echo: EchoServer, exporter: InMemorySpanExporter) -> None:
    gateway = _gateway(echo, exporter)
    with pytest.raises(RouteNotFoundError):
        await call(gateway, "POST", "/nowhere")
    span = _only(exporter)
    assert span.name == "gateway"
    assert dict(span.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/nowhere",
        "bastion.outcome": "route_not_found",
        "http.response.status_code": 404,
    }


async def test_upstream_failure_is_an_error_span(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    gateway = _gateway(echo, exporter)
    with pytest.raises(Exception) as caught:
        await call(gateway, "GET", "/dead")
    await gateway.shutdown()
    assert getattr(caught.value, "code", None) == "upstream_unavailable"
    span = _only(exporter)
    assert span.attributes is not None
    assert span.attributes["bastion.outcome"] == "upstream_unavailable"
    assert span.attributes["http.response.status_code"] == 502
    assert span.status.status_code is StatusCode.ERROR


async def test_client_traceparent_is_ignored_and_replaced(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    # An untrusted client can neither pick the trace id nor force sampling (ratio 0).
    gateway = _gateway(echo, exporter, ratio=0.0)
    result = await call(
        gateway,
        "GET",
        "/pub/x",
        headers=[("traceparent", CLIENT_PARENT), ("tracestate", "evil=1")],
    )
    await gateway.shutdown()
    assert exporter.get_finished_spans() == ()
    headers = result.json()["headers"]
    assert CLIENT_TRACE not in headers["traceparent"]
    assert int(headers["traceparent"][-2:], 16) & 1 == 0  # not sampled, and says so upstream
    assert "tracestate" not in headers


async def test_client_traceparent_does_not_become_the_parent(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    gateway = _gateway(echo, exporter)
    await call(gateway, "GET", "/pub/x", headers=[("traceparent", CLIENT_PARENT)])
    await gateway.shutdown()
    span = _only(exporter)
    assert span.parent is None
    assert format(span.context.trace_id, "032x") != CLIENT_TRACE


async def test_trusted_proxy_traceparent_is_the_parent(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    gateway = _gateway(echo, exporter, ratio=0.0, trusted_proxies=["203.0.113.0/24"])
    result = await call(
        gateway,
        "GET",
        "/pub/x",
        headers=[("traceparent", CLIENT_PARENT), ("tracestate", "vendor=1")],
    )
    await gateway.shutdown()
    span = _only(exporter)  # the parent's sampled flag wins over ratio 0
    assert format(span.context.trace_id, "032x") == CLIENT_TRACE
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    headers = result.json()["headers"]
    own = format(span.context.span_id, "016x")
    assert headers["traceparent"] == f"00-{CLIENT_TRACE}-{own}-01"
    assert headers["tracestate"] == "vendor=1"


async def test_tracer_survives_a_route_reload(
    echo: EchoServer, exporter: InMemorySpanExporter
) -> None:
    gateway = _gateway(echo, exporter)
    gateway.reload([route("new", "/new", echo.url, public=True)])
    assert (await call(gateway, "GET", "/new")).status == 200
    await gateway.shutdown()
    assert _only(exporter).name == "gateway new"


async def test_without_tracer_the_upstream_sees_the_client_headers(echo: EchoServer) -> None:
    gateway = Gateway([route("pub", "/pub", echo.url, public=True)])
    assert gateway.tracer is None
    result = await call(gateway, "GET", "/pub/x", headers=[("traceparent", CLIENT_PARENT)])
    await gateway.shutdown()
    assert result.json()["headers"]["traceparent"] == CLIENT_PARENT


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
    monkeypatch.setattr("bastion.audit.tracing.tracing_installed", lambda: False)
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
