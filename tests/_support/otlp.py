"""A tiny OTLP/HTTP receiver for the tracing tests: records the POSTs to /v1/traces.

It stands in for the collector; :meth:`Receiver.spans` decodes the export
requests with opentelemetry-proto.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver(ThreadingHTTPServer):
    """Records the body of every POST to /v1/traces."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.posts: list[tuple[str, str, bytes]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/traces"

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def spans(self, service: str) -> list[Any]:
        """Every span received (protobuf ``Span``s); each export must be well formed."""
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        spans = []
        for path, content_type, body in self.posts:
            assert path == "/v1/traces"
            assert content_type == "application/x-protobuf"
            assert body
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                attributes = resource_spans.resource.attributes
                assert {a.key: a.value.string_value for a in attributes}["service.name"] == service
                for scope_spans in resource_spans.scope_spans:
                    assert scope_spans.scope.name == "bastion.gateway"
                    spans.extend(scope_spans.spans)
        return spans


def attributes(span: Any) -> dict[str, object]:
    """A span's attributes as plain values (strings and ints)."""
    out: dict[str, object] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind)
    return out


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: no stderr noise
        pass
