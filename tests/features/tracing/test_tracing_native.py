"""End to end: the native core traces the requests it answers, as Python would.

One ``bastion serve`` (native engine) with tracing on, an OTLP/HTTP receiver
and the echo upstream. The trusted proxy is 127.0.0.2 (the tests connect from
that source address); requests from 127.0.0.1 are an ordinary client's.

- the routes list as native: tracing no longer sends them to Python;
- a trusted proxy's ``traceparent`` / ``tracestate`` are honoured: the span
  joins its trace (parent span id, tracestate), the upstream receives
  bastion's span as the parent — never the client's own;
- an untrusted client's trace headers are ignored (a new trace, no
  tracestate): it cannot graft spans onto a trace of its choosing;
- a trusted parent's unsampled flag is obeyed: no span, the flag forwarded;
- native refusals (a 429, an upstream failure) are spans with the refusal's
  code and status, a 5xx an error;
- ``sample_ratio: 0`` exports nothing, and a client's sampled ``traceparent``
  cannot force a span.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from _support import BastionProcess, EchoThread, free_port, run_cli
from _support.native import plane
from _support.otlp import Receiver, attributes

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
SPAN_KIND_SERVER = 2
STATUS_ERROR = 2


def _config(tmp_path: Path, echo: EchoThread, receiver: Receiver, ratio: float) -> Path:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        "trusted_proxies: [127.0.0.2/32]\n"
        "routes:\n"
        "  - name: pub\n"
        "    match: {path: /pub}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        "  - name: limited\n"
        "    match: {path: /limited}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        "    limits: [{per: ip, rate: 1/minute}]\n"
        "  - name: down\n"
        "    match: {path: /down}\n"
        f"    upstream: http://127.0.0.1:{free_port()}\n"
        "    public: true\n"
        "tracing:\n"
        "  enabled: true\n"
        f"  otlp_endpoint: {receiver.url}\n"
        "  service_name: native-e2e\n"
        f"  sample_ratio: {ratio}\n"
    )
    return config


def _upstream_trace(response: httpx.Response) -> dict[str, str]:
    headers = response.json()["headers"]
    return {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}


def test_native_spans_follow_pythons_rules(
    tmp_path: Path, receiver: Receiver, echo: EchoThread
) -> None:
    config = _config(tmp_path, echo, receiver, 1.0)
    proc = BastionProcess("-c", str(config), cwd=tmp_path)
    trusted_hop = httpx.HTTPTransport(verify=False, local_address="127.0.0.2")
    began = time.time_ns()
    with (
        proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
        httpx.Client(base_url=proc.url, transport=trusted_hop, timeout=10) as proxy,
    ):
        python = plane(client.get("/healthz"))  # Python's plane (not a gateway request)
        elsewhere = client.get("/elsewhere")  # 404, rendered natively (a span of its own)
        joined = proxy.get(
            "/pub/joined",
            params={"api_key": "not-for-traces"},
            headers={
                "traceparent": f"00-{TRACE}-{PARENT}-01",
                "tracestate": "vendor=abc , other=1",
            },
        )
        forged = client.get(
            "/pub/forged",
            headers={"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "vendor=abc"},
        )
        unsampled = proxy.get("/pub/unsampled", headers={"traceparent": f"00-{TRACE}-{PARENT}-00"})
        limited = [client.get("/limited/x") for _ in range(2)]
        down = client.get("/down/x")
    ended = time.time_ns()
    assert proc.proc is not None and proc.proc.returncode == 0, proc.stderr
    natives = [joined, forged, unsampled, *limited, down, elsewhere]
    assert [r.status_code for r in natives] == [200, 200, 200, 200, 429, 502, 404]
    assert all(plane(r) != python for r in natives)

    # The upstream sees bastion's span as the parent, never the client's.
    up_joined = _upstream_trace(joined)
    assert set(up_joined) == {"traceparent", "tracestate"}
    version, trace_id, joined_span, flags = up_joined["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE, "01")
    assert joined_span not in (PARENT, "0" * 16)
    assert up_joined["tracestate"] == "vendor=abc,other=1"
    up_forged = _upstream_trace(forged)
    assert set(up_forged) == {"traceparent"}  # the client's tracestate is dropped
    _, forged_trace, forged_span, forged_flags = up_forged["traceparent"].split("-")
    assert forged_trace != TRACE and forged_flags == "03"  # sampled, random trace id
    _, unsampled_trace, _, unsampled_flags = _upstream_trace(unsampled)["traceparent"].split("-")
    assert (unsampled_trace, unsampled_flags) == (TRACE, "00")

    spans = receiver.spans("native-e2e")
    by_path = {attributes(s)["url.path"]: s for s in spans}
    assert sorted(by_path) == [
        "/down/x",
        "/elsewhere",
        "/limited/x",
        "/pub/forged",
        "/pub/joined",
    ]
    assert len(spans) == 6  # /limited/x twice; no span for the unsampled parent
    span = by_path["/pub/joined"]
    assert span.name == "gateway pub"
    assert span.kind == SPAN_KIND_SERVER
    assert attributes(span) == {
        "http.request.method": "GET",
        "bastion.route": "pub",
        "url.path": "/pub/joined",
        "bastion.outcome": "allowed",
        "http.response.status_code": 200,
    }
    assert (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex()) == (
        TRACE,
        joined_span,
        PARENT,
    )
    assert span.trace_state == "vendor=abc,other=1"
    assert began <= span.start_time_unix_nano <= span.end_time_unix_nano <= ended
    span = by_path["/pub/forged"]
    assert (span.trace_id.hex(), span.span_id.hex()) == (forged_trace, forged_span)
    assert span.parent_span_id == b"" and span.trace_state == ""
    refused = [s for s in spans if attributes(s)["url.path"] == "/limited/x"]
    outcomes = sorted(
        (attributes(s)["bastion.outcome"], attributes(s)["http.response.status_code"])
        for s in refused
    )
    assert outcomes == [("allowed", 200), ("rate_limited", 429)]
    span = by_path["/down/x"]
    assert attributes(span)["bastion.outcome"] == down.json()["reason"]
    assert attributes(span)["http.response.status_code"] == 502
    assert span.status.code == STATUS_ERROR
    assert by_path["/pub/forged"].status.code != STATUS_ERROR
    # Python's spans still come through (the same export pipeline).
    assert by_path["/elsewhere"].name == "gateway"
    assert b"not-for-traces" not in b"".join(body for _, _, body in receiver.posts)


def test_ratio_zero_exports_nothing(tmp_path: Path, receiver: Receiver, echo: EchoThread) -> None:
    config = _config(tmp_path, echo, receiver, 0.0)
    proc = BastionProcess("-c", str(config), cwd=tmp_path)
    with proc, httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python = plane(client.get("/healthz"))
        responses = [
            client.get(f"/pub/{n}", headers={"traceparent": f"00-{TRACE}-{PARENT}-01"})
            for n in range(20)
        ]
    assert proc.proc is not None and proc.proc.returncode == 0, proc.stderr
    assert all(r.status_code == 200 and plane(r) != python for r in responses)
    for response in responses:
        _, trace_id, _, flags = _upstream_trace(response)["traceparent"].split("-")
        assert trace_id != TRACE and flags == "02"  # not sampled: the client cannot force it
    assert receiver.spans("native-e2e") == []


def test_a_route_reload_keeps_tracing_until_a_restart(
    tmp_path: Path, receiver: Receiver, echo: EchoThread
) -> None:
    """Only routes reload (Python's tracer stays): the native core keeps tracing alike."""
    config = _config(tmp_path, echo, receiver, 1.0)
    text = config.read_text()
    proc = BastionProcess("-c", str(config), cwd=tmp_path)
    with proc, httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        config.write_text(
            text.replace("  enabled: true\n", "  enabled: false\n").replace(
                "routes:\n",
                f"routes:\n  - name: late\n    match: {{path: /late}}\n"
                f"    upstream: {echo.server.url}\n    public: true\n",
            )
        )
        reloaded = run_cli("routes", "reload", "-c", str(config), cwd=tmp_path)
        assert reloaded.returncode == 0, reloaded.stderr
        deadline = time.monotonic() + 20
        while client.get("/late/x").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = client.get("/pub/after")
    assert proc.proc is not None and proc.proc.returncode == 0, proc.stderr
    assert "tracing changed" in proc.stderr  # said to need a restart
    assert after.status_code == 200
    traceparent = _upstream_trace(after)["traceparent"]
    spans = {attributes(s)["url.path"]: s for s in receiver.spans("native-e2e")}
    assert spans["/pub/after"].span_id.hex() == traceparent.split("-")[2]
    assert spans["/late/x"].name == "gateway late"
