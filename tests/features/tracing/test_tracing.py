"""End to end: ``bastion serve`` with tracing on exports its spans over OTLP/HTTP.

A tiny OTLP/HTTP receiver (a thread HTTP server recording POSTs to /v1/traces)
stands in for the collector; the export requests are decoded with
opentelemetry-proto to check what bastion sent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from _support import BastionProcess, EchoThread


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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def test_spans_reach_the_otlp_receiver(
    tmp_path: Path, receiver: Receiver, echo: EchoThread
) -> None:
    (tmp_path / "bastion.yaml").write_text(
        "routes:\n"
        "  - name: pub\n"
        "    match: {path: /pub}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        "tracing:\n"
        "  enabled: true\n"
        f"  otlp_endpoint: {receiver.url}\n"
        "  service_name: e2e-bastion\n"
    )
    proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path)
    with proc, httpx.Client(base_url=proc.url, verify=False, timeout=10) as http:
        forwarded = http.get("/pub/a", params={"api_key": "not-for-traces"})
        assert forwarded.status_code == 200
        assert http.get("/pub/b").status_code == 200
        assert http.get("/elsewhere").status_code == 404
    assert proc.proc is not None and proc.proc.returncode == 0, proc.stderr
    # Stopped (SIGTERM): the shutdown flushed the batch to the receiver.
    assert receiver.posts, "no OTLP export request arrived"
    spans = []
    for path, content_type, body in receiver.posts:
        assert path == "/v1/traces"
        assert content_type == "application/x-protobuf"
        assert body
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}[
                "service.name"
            ]
            assert service == "e2e-bastion"
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    found = {
        (
            span.name,
            next(a.value.string_value for a in span.attributes if a.key == "url.path"),
            next(a.value.string_value for a in span.attributes if a.key == "bastion.outcome"),
        )
        for span in spans
    }
    assert len(spans) == 3
    assert found == {
        ("gateway pub", "/pub/a", "allowed"),
        ("gateway pub", "/pub/b", "allowed"),
        ("gateway", "/elsewhere", "route_not_found"),
    }
    # The upstream was given bastion's own trace context.
    trace_ids = {span.trace_id.hex() for span in spans if span.name == "gateway pub"}
    upstream_parent = forwarded.json()["headers"]["traceparent"]
    assert upstream_parent.split("-")[1] in trace_ids
    assert b"not-for-traces" not in b"".join(body for _, _, body in receiver.posts)
