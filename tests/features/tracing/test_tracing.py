"""End to end: ``bastion serve`` with tracing on exports its spans over OTLP/HTTP.

A tiny OTLP/HTTP receiver (``_support.otlp``) stands in for the collector; the
export requests are decoded with opentelemetry-proto to check what bastion sent.
The route is served natively (its span comes from the native core's record),
the unmatched path by Python.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from _support import BastionProcess, EchoThread
from _support.otlp import Receiver


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
    spans = receiver.spans("e2e-bastion")
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
