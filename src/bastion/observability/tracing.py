"""Optional OpenTelemetry tracing of gateway requests (W3C Trace Context, OTLP/HTTP export).

Installed only with ``pip install 'bastion[tracing]'`` and ``tracing.enabled: true``;
otherwise the runtime has no tracer (``Runtime.control.tracer`` is ``None``).

- One span per gateway request, ``gateway <route>`` (kind SERVER), with
  ``http.request.method``, ``url.path`` (the normalised path, never the query:
  query strings carry API keys and tokens), ``bastion.route``, ``bastion.outcome``
  (``allowed`` or the denial's error code) and ``http.response.status_code``
  when known; a 5xx sets the span status to error. A forward-auth decision
  (``/auth/verify``) is a span of its own with ``bastion.door = forward_auth``.
- Spans are exported by a :class:`BatchSpanProcessor`: ending a span only
  appends to an in-memory queue, the OTLP/HTTP POSTs run in the SDK's own
  thread, and a full queue drops spans rather than slowing requests.
- Sampling: ``ParentBased(TraceIdRatioBased(sample_ratio))``.
- An incoming ``traceparent`` / ``tracestate`` (W3C Trace Context,
  https://www.w3.org/TR/trace-context/) is honoured only when the direct peer is
  a configured trusted proxy — the same rule as ``X-Forwarded-*``. From any
  other client it is ignored and a new trace starts: a client could otherwise
  force sampling of all its requests (cost amplification when ``sample_ratio``
  is below 1) or graft bastion's spans onto someone else's trace id.
- The upstream always receives the ``traceparent`` of bastion's span (any
  client-sent ``traceparent`` / ``tracestate`` is replaced).

The native core traces every gateway request under these rules
(``native/src/tracing.rs``: the sampling decision, the trace context sent
upstream); a sampled one's span arrives as a record through the native audit
drain and :meth:`GatewayTracer.record_native` exports it: a second
``TracerProvider`` sharing the resource and the span processor (so the same
:class:`BatchSpanProcessor` exports it), sampler ``ALWAYS_ON`` (the native
core sampled already), and an :class:`~opentelemetry.sdk.trace.id_generator.IdGenerator`
that hands the SDK the record's trace and span ids — the SDK's supported way
of choosing ids; the parent is the record's remote parent as a
``NonRecordingSpan``, the start and end times the record's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError
from bastion.settings.monitoring import INSTALL_HINT, tracing_installed

if TYPE_CHECKING:  # an optional extra, loaded only when tracing is on (tracing_installed)
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["INSTALL_HINT", "GatewayTracer", "TracingUnavailableError", "tracing_installed"]


#: One native span record (``_native.trace_drain``): trace id, span id, parent
#: ``(span id, trace flags)`` or ``None``, tracestate, start and end (Unix ns),
#: route, method, normalised path, outcome, status, and the door (``None``: the
#: gateway's; ``"forward_auth"``: a decision for another proxy).
NativeSpan = tuple[
    int,
    int,
    "tuple[int, int] | None",
    "str | None",
    int,
    int,
    "str | None",
    str,
    str,
    str,
    int,
    "str | None",
]


class TracingUnavailableError(BastionError):
    """Tracing is enabled but the OpenTelemetry packages are not installed."""

    code = "tracing_unavailable"
    status = 500
    title = "Tracing unavailable"


class GatewayTracer:
    """Traces gateway requests with an OpenTelemetry ``TracerProvider``.

    Build it with :meth:`from_settings` (OTLP/HTTP export) or with an
    ``exporter`` of your own (tests pass an ``InMemorySpanExporter``). Raises
    :class:`TracingUnavailableError` when OpenTelemetry is not installed.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        service_name: str = "bastion",
        sample_ratio: float = 1.0,
        batch: bool = True,
    ) -> None:
        if not tracing_installed():
            raise TracingUnavailableError(
                f"tracing.enabled is true but OpenTelemetry is not installed — run "
                f"`{INSTALL_HINT}`, or set tracing.enabled to false"
            )
        from opentelemetry.context import Context
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        # Batch: a span's end only queues it; the export runs in the SDK's thread.
        # Simple (synchronous) only for tests that read an in-memory exporter at once.
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("bastion.gateway")
        # The native core's spans: same resource and processor, its ids and decision.
        self._native_ids = _record_ids()
        self._native_provider = TracerProvider(
            resource=self.provider.resource,
            sampler=ALWAYS_ON,
            id_generator=self._native_ids,
            shutdown_on_exit=False,  # the processor is shut down with self.provider
        )
        self._native_provider.add_span_processor(processor)
        self._native_tracer = self._native_provider.get_tracer("bastion.gateway")
        self._in_context = set_span_in_context
        # No ambient context: an untrusted request's span is always a new root.
        self._root = Context()
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any) -> GatewayTracer:
        """A tracer exporting to ``settings.otlp_endpoint`` (a ``TracingSettings``).

        Raises :class:`TracingUnavailableError` when OpenTelemetry is not installed.
        """
        if not tracing_installed():
            raise TracingUnavailableError(
                f"tracing.enabled is true but OpenTelemetry is not installed — run "
                f"`{INSTALL_HINT}`, or set tracing.enabled to false"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # A short timeout: an unreachable collector costs the export thread, never a request.
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=5)
        return cls(exporter, service_name=settings.service_name, sample_ratio=settings.sample_ratio)

    def record_native(self, spans: list[NativeSpan]) -> None:
        """Export the spans of sampled requests the native core answered (see the module)."""
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            TraceFlags,
            TraceState,
        )

        ids = self._native_ids
        for row in spans:
            (trace_id, span_id, parent, state, start, end, route, method, path, outcome, status,
             door) = row  # fmt: skip
            ids.trace_id, ids.span_id = trace_id, span_id
            context = self._root
            if parent is not None:
                remote = SpanContext(
                    trace_id,
                    parent[0],
                    is_remote=True,
                    trace_flags=TraceFlags(parent[1]),
                    trace_state=TraceState.from_header([state]) if state else None,
                )
                context = self._in_context(NonRecordingSpan(remote), self._root)
            # In the order Python's own span ends with (GatewayTracer._finish): a decision
            # made for another proxy sets the judged method again, after its door.
            attributes: dict[str, str | int] = {} if door else {"http.request.method": method}
            if route is not None:
                attributes["bastion.route"] = route
            if path:
                attributes["url.path"] = path
            if door:
                attributes["bastion.door"] = door
                attributes["http.request.method"] = method
            attributes["bastion.outcome"] = outcome
            if status:
                # 0: none known — an allowed decision's span ends before its 200 is sent.
                attributes["http.response.status_code"] = status
            span = self._native_tracer.start_span(
                f"gateway {route}" if route is not None else "gateway",
                context=context,
                kind=self._server,
                attributes=attributes,
                start_time=start,
            )
            if status >= 500:
                span.set_status(self._error)
            span.end(end_time=end)

    def shutdown(self) -> None:
        """Flush queued spans and stop the export thread (blocking; idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.provider.shutdown()


def _record_ids() -> Any:
    """An ``IdGenerator`` handing out the ids of the native span being recorded.

    :meth:`GatewayTracer.record_native` sets ``trace_id`` and ``span_id`` before
    each ``start_span`` (one thread: the drain's); the SDK asks for a trace id
    only for a span without a parent.
    """
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class RecordIds(IdGenerator):
        trace_id = 0
        span_id = 0

        def generate_span_id(self) -> int:
            return self.span_id

        def generate_trace_id(self) -> int:
            return self.trace_id

        def is_trace_id_random(self) -> bool:
            return True  # the native core's ids are uniformly random

    return RecordIds()
