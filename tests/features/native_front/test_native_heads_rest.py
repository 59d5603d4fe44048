"""End to end: the request heads and targets the native front once deferred, answered natively.

One ``bastion serve`` (native engine, ``trusted_proxies: [127.0.0.2]``, ``request_limits``
small enough to cross over HTTP/2). Which plane answered is told by the request id's
per-plane prefix. Where Python's pipeline answered the same request, the native answer is
the one it gave (recorded in ``tests/vectors/twins/test_native_heads_rest.json``: the answer
but for the request id, the date and the upstream's port, what the upstream received, the
``gateway.denied`` row), and it counts in Python's ``bastion_gateway_requests_total`` series:

- ``Host``: an HTTP/1.0 request without one (or with an empty one) is served as Python's
  matcher serves it (the host of no route); one with bytes outside ASCII, or ``NEL`` /
  ``NBSP`` / spaces at its ends, is read as Python reads it (latin-1, ``str.strip()``);
- targets: a path with bytes outside ASCII is percent-encoded and served as Python's
  ``normalize_path`` reads it (as Python answered the same path percent-encoded by the
  client: a server of Python's never handed the raw bytes to its app); a query with bytes outside
  ASCII is forwarded as sent; ``*`` is the gateway's ``400 invalid_path``; an
  authority-form target is read as ``/``, as the hop to Python sends it, and a ``CONNECT``
  (which hyper reads) is bastion's ``400 invalid_method`` (no tunnel is ever opened);
- HTTP/2: a head is counted as Python's app receives it (``Host`` from ``:authority``
  added): over ``max_headers`` by that count, ``431 headers_too_large`` natively;
- ``X-Forwarded-For`` from a trusted proxy naming a hop that is not an IP address:
  bastion's own ``400 invalid_forwarded_for`` (Python took the text for the client's
  address), audited at step ``framing`` under the peer's address, metered under no route.
  A hop left of the client's is never read; a bracketed IPv6 hop is its address; from an
  untrusted peer the header is not read at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from _support import EchoThread
from _support.gateway_server import (
    GatewayServer,
    RawResponse,
    RawUpstream,
    gateway_fixture,
    h2_request,
    plane,
)
from _support.recorded import Recorded, recorded_row

MAX_HEADERS = 20
PROXY = "127.0.0.2"  # a trusted proxy (the tests' other address is not one)
RAW_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
#: What Python's pipeline answered to the requests of this module.
RECORDED = Recorded(__name__)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def raw_upstream() -> Iterator[RawUpstream]:
    upstream = RawUpstream(RAW_ANSWER, linger=0.0)
    try:
        yield upstream
    finally:
        upstream.close()


def _routes(request: pytest.FixtureRequest) -> str:
    raw: RawUpstream = request.getfixturevalue("raw_upstream")
    return (
        "  - name: api\n"
        "    match: {path: /api}\n"
        "    upstream: {echo}\n"
        "    public: true\n"
        "  - name: hosted\n"
        "    match: {path: /adm, host: admin.example}\n"
        "    upstream: {echo}\n"
        "    public: true\n"
        "  - name: raw\n"
        "    match: {path: /raw}\n"
        f"    upstream: {raw.url}\n"
        "    public: true\n"
    )


served = gateway_fixture(
    _routes,
    f"trusted_proxies: [{PROXY}]\n"
    f"request_limits: {{max_headers: {MAX_HEADERS}, max_header_bytes: 65536}}\n",
)


def masked(response: RawResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    rid = response.request_id
    # `connection: close` aside: an HTTP/1.0 request's connection closes after the
    # answer either way (Python's server says so, the front's HTTP/1.0 answer need not).
    kept = [
        (name, value)
        for name, value in response.headers
        if name not in ("x-request-id", "date", "content-length")
        and (name, value) != ("connection", "close")
    ]
    body = response.body.replace(rid.encode(), b"RID") if rid else response.body
    return response.status, kept, body


def _unported(text: str) -> str:
    """``text`` with the echo upstream's port (it changes with every run) written ``PORT``."""
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)


def recorded_form(response: RawResponse) -> dict[str, Any]:
    """:func:`masked` as recorded (the body read as latin-1), the upstream's port masked."""
    status, kept, body = masked(response)
    return {
        "status": status,
        "headers": [[name, _unported(value)] for name, value in kept],
        "body": _unported(body.decode("latin-1")),
    }


def recorded_view(seen: list[tuple[Any, ...]]) -> list[Any]:
    """:func:`upstream_view` as recorded, the upstream's port masked."""
    return [
        [method, path, query, [[name, _unported(value)] for name, value in headers]]
        for method, path, query, headers in seen
    ]


def case_of(request: bytes) -> str:
    """A case's name: the request's head, one line after the other."""
    return " | ".join(request.decode("latin-1").split("\r\n")[:-2])


def upstream_view(echo: EchoThread, before: int) -> list[tuple[Any, ...]]:
    """What the echo upstream received since ``before`` (but the request id)."""
    return [
        (r.method, r.path, r.query, [h for h in r.headers if h[0] != "x-bastion-request-id"])
        for r in list(echo.server.received)[before:]
    ]


def head(line: str, *fields: str) -> bytes:
    return ("\r\n".join([line, *fields]) + "\r\n\r\n").encode("latin-1")


# (request, status)
HOSTS = [
    # HTTP/1.0 without Host, or with an empty one: the routes for any host.
    (head("GET /api/x HTTP/1.0"), 200),
    (head("GET /api/x HTTP/1.0", "Host: "), 200),
    (head("GET /adm/x HTTP/1.0"), 404),
    # Stripped as `str.strip()` strips the latin-1 text: NBSP, NEL, spaces.
    (head("GET /adm/x HTTP/1.1", "Host: admin.example\xa0"), 200),
    (head("GET /adm/x HTTP/1.1", "Host:  ADMIN.example.:8443\x85"), 200),
    # Bytes outside ASCII inside: no route's host.
    (head("GET /adm/x HTTP/1.1", "Host: \xe9admin.example"), 404),
    (head("GET /api/x HTTP/1.1", "Host: admin.\xe9xample"), 200),
]


def test_hosts_python_reads_are_read_natively_alike(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    _, native_plane = served.planes("/api/x")
    counts_before = served.counts()
    refused: dict[str, str] = {}
    for request, status in HOSTS:
        case = case_of(request)
        before = len(echo_upstream.server.received)
        native = served.raw(request)
        assert (native.status, plane(native)) == (status, native_plane), (request, native.body)
        assert recorded_form(native) == RECORDED[case]["answer"], request
        seen = upstream_view(echo_upstream, before)
        if status == 200:
            # The request Python sent upstream (X-Forwarded-Host as sent).
            assert len(seen) == 1, request
            assert recorded_view(seen) == RECORDED[case]["upstream"], (request, seen)
        else:
            assert seen == [], request
            refused[native.request_id] = case
    rows = served.denied(set(refused))
    for native_rid, case in refused.items():
        assert recorded_row(rows[native_rid]) == RECORDED["row " + case], case
        assert rows[native_rid].reason == "route_not_found"
    after = served.counts()
    label = ("(none)", "route_not_found")
    assert after.get(label, 0) - counts_before.get(label, 0) == len(refused)


def test_a_path_outside_ascii_is_served_as_normalize_path_reads_it(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python_plane, native_plane = served.planes("/api/x")
    # (target, the path upstream; Python's answer is the one it gave to the path
    # percent-encoded by the client)
    for target, path in [
        ("/api/caf\xc3\xa9", "/api/caf%C3%A9"),
        ("/api//caf\xc3\xa9/./x?q=1", "/api/caf%C3%A9/x"),
        ("http://gw.test/api/\xe2\x82\xac", "/api/%E2%82%AC"),
    ]:
        before = len(echo_upstream.server.received)
        native = served.raw(head(f"GET {target} HTTP/1.1", "Host: gw.test"))
        assert (native.status, plane(native)) == (200, native_plane)
        assert recorded_form(native) == RECORDED["path " + target]["answer"], target
        seen = upstream_view(echo_upstream, before)
        assert len(seen) == 1 and recorded_view(seen) == RECORDED["path " + target]["upstream"]
        assert seen[0][1] == path
    # Under a reserved prefix it is still the control plane's (Python's, as before).
    answer = served.raw(head("GET /admin/caf\xc3\xa9 HTTP/1.1", "Host: gw.test"))
    assert answer.request_id == "" or plane(answer) == python_plane


def test_a_query_outside_ascii_is_forwarded_as_sent(
    served: GatewayServer, raw_upstream: RawUpstream
) -> None:
    _, native_plane = served.planes("/api/x")
    before = len(raw_upstream.requests)
    answer = served.raw(head("GET /raw/x?q=caf\xc3\xa9&r=\xe2\x82\xac HTTP/1.1", "Host: gw.test"))
    assert (answer.status, answer.body, plane(answer)) == (200, b"ok", native_plane)
    assert raw_upstream.requests[before:] == [
        "GET /raw/x?q=caf\xc3\xa9&r=\xe2\x82\xac HTTP/1.1".encode("latin-1")
    ]


def test_star_and_authority_form_get_pythons_answer_natively(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    _, native_plane = served.planes("/api/x")
    counts_before = served.counts()
    before = len(echo_upstream.server.received)
    for request, status, reason, path in [
        (head("OPTIONS * HTTP/1.1", "Host: gw.test"), 400, "invalid_path", "*"),
        (head("GET * HTTP/1.1", "Host: gw.test"), 400, "invalid_path", "*"),
        (head("GET gw.test:80 HTTP/1.1", "Host: gw.test"), 404, "route_not_found", "/"),
    ]:
        case = "star " + request.decode().split("\r\n")[0]
        native = served.raw(request)
        assert (native.status, plane(native)) == (status, native_plane)
        assert recorded_form(native) == RECORDED[case]["answer"], request
        assert native.json()["reason"] == reason
        if reason == "invalid_path":
            assert native.json()["detail"] == "The request path must start with '/'."
        rows = served.denied({native.request_id})
        assert recorded_row(rows[native.request_id]) == RECORDED[case]["row"], request
        assert rows[native.request_id].data["path"] == path
        assert rows[native.request_id].data["step"] == "match"
    # A CONNECT (hyper reads it) is never served: bastion's own 400, before any route, and
    # no tunnel is opened (Python's pipeline proxied it as a plain request).
    native = served.raw(head("CONNECT gw.test:443 HTTP/1.1", "Host: gw.test:443"))
    assert (native.status, plane(native)) == (400, native_plane)
    assert native.json()["reason"] == "invalid_method"
    assert native.json()["detail"] == "CONNECT is not served: bastion opens no tunnels."
    rows = served.denied({native.request_id})
    assert rows[native.request_id].data["step"] == "framing"
    assert len(echo_upstream.server.received) == before
    after = served.counts()
    for reason, expected in (("invalid_path", 2), ("route_not_found", 1), ("invalid_method", 1)):
        label = ("(none)", reason)
        assert after.get(label, 0) - counts_before.get(label, 0) == expected, reason


def _curl_h2(curl: str, url: str, headers: list[str]) -> tuple[int, dict[str, str], bytes]:
    extra = [arg for field in headers for arg in ("-H", field)]
    done = subprocess.run(
        [curl, "-sk", "--http2", "-D", "-", *extra, url],
        capture_output=True,
        timeout=30,
        check=True,
    )
    head_, _, body = done.stdout.partition(b"\r\n\r\n")
    status_line, *lines = head_.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), fields, body


def test_an_http2_head_is_counted_as_python_receives_it(served: GatewayServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (httpx has no h2 package here)")
    if not served.tls:
        pytest.skip("HTTP/2 is negotiated over TLS")
    _, native_plane = served.planes("/api/x")
    recorded = RECORDED["http/2 headers_too_large"]
    # curl sends user-agent and accept; the hop to Python adds host (from :authority):
    # 3 + k fields, plus the pad.
    for k, status in ((MAX_HEADERS - 4, 200), (MAX_HEADERS - 3, 431)):
        fields = [f"X-F{i}: {i}" for i in range(k)]
        n_status, n_head, n_body = _curl_h2(curl, f"{served.url}/api/x", [*fields, "X-Pad: 1"])
        n_rid = n_head["x-request-id"]
        assert n_status == status, k
        assert n_rid.rsplit("-", 1)[0] == native_plane
        if status == 431:
            assert n_body.replace(n_rid.encode(), b"RID").decode() == recorded["body"]
            assert b'"reason":"headers_too_large"' in n_body
            row = recorded_row(served.denied({n_rid})[n_rid])
            # The user agent is this machine's curl's (its version is not recorded).
            assert str(row[7]).startswith("curl/")
            assert row[:7] + row[8:] == recorded["row"][:7] + recorded["row"][8:]


def test_http2_host_fields_are_judged_as_python_reads_them(served: GatewayServer) -> None:
    if not served.tls:
        pytest.skip("HTTP/2 is negotiated over TLS")
    _, native_plane = served.planes("/api/x")
    pseudo = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/adm/x")]
    authority = (b":authority", b"gw.test")
    for fields, reason, case in [
        # One Host field: read (the hop keeps it), before the authority.
        ([*pseudo, authority, (b"host", b"admin.example")], None, None),
        ([*pseudo, (b"host", b"ADMIN.example:443")], None, None),
        # Several, an empty one, or none and no authority: Python's 400 (HTTP/1.1's).
        (
            [*pseudo, authority, (b"host", b"admin.example"), (b"host", b"a")],
            "invalid_host",
            "http/2 two Host fields",
        ),
        ([*pseudo, authority, (b"host", b"")], "invalid_host", "http/2 an empty Host field"),
        ([*pseudo], "invalid_host", "http/2 no Host field and no authority"),
    ]:
        native = orjson.loads(h2_request(served, fields))
        if case is None:
            # The echo's document: served on admin.example's route.
            rid = native["headers"]["x-bastion-request-id"]
            assert native["path"] == "/adm/x"
        else:
            recorded = RECORDED[case]
            assert native["reason"] == recorded["reason"] == reason, native
            assert native["detail"] == recorded["detail"]
            rid = native["request_id"]
            rows = served.denied({rid})
            assert recorded_row(rows[rid]) == recorded["row"], case
        assert rid.rsplit("-", 1)[0] == native_plane, fields


def test_a_forwarded_hop_that_is_not_an_address_is_refused_natively(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python_plane, native_plane = served.planes("/api/x")
    counts_before = served.counts()
    before = len(echo_upstream.server.received)
    rids = []
    for hop in ("unknown", "203.0.113.9:4711", "_hidden", "10.1.2.3.4", "1.2.3.4, unknown"):
        request = head("GET /api/x HTTP/1.1", "Host: gw.test", f"X-Forwarded-For: {hop}")
        answer = served.raw(request, source=PROXY)
        assert (answer.status, plane(answer)) == (400, native_plane), hop
        assert answer.header("content-type") == "application/problem+json"
        document = answer.json()
        assert (document["reason"], document["title"]) == (
            "invalid_forwarded_for",
            "Invalid X-Forwarded-For header",
        )
        rids.append(answer.request_id)
    assert len(echo_upstream.server.received) == before, "a refused request went upstream"
    rows = served.denied(set(rids))
    for rid in rids:
        row = rows[rid]
        assert (row.reason, row.route, row.ip) == ("invalid_forwarded_for", None, PROXY)
        assert row.data == {"status": 400, "step": "framing", "method": "GET", "path": "/api/x"}
    label = ("(none)", "invalid_forwarded_for")
    assert served.counts().get(label, 0) - counts_before.get(label, 0) == len(rids)

    # A WebSocket upgrade alike, with the head of the upgrade door's refusals.
    upgrade = head(
        "GET /api/ws HTTP/1.1",
        "Host: gw.test",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        "X-Forwarded-For: unknown",
    )
    answer = served.raw(upgrade, source=PROXY)
    assert (answer.status, answer.json()["reason"]) == (400, "invalid_forwarded_for")
    assert (answer.header("connection"), answer.header("x-request-id")) == ("close", None)
    assert answer.request_id.rsplit("-", 1)[0] == native_plane
    row = served.denied({answer.request_id})[answer.request_id]
    assert (row.reason, row.data["step"], row.data["door"]) == (
        "invalid_forwarded_for",
        "framing",
        "websocket",
    )

    # Read as Python reads it otherwise: a hop left of the client's is the client's own
    # claim (never read), `[v6]` is its address; an untrusted peer's header is not read.
    for hop, source in (
        ("unknown, 203.0.113.9", PROXY),
        ("[2001:db8::1]", PROXY),
        ("unknown", None),
    ):
        request = head("GET /api/x HTTP/1.1", "Host: gw.test", f"X-Forwarded-For: {hop}")
        answer = served.raw(request, source=source)
        assert (answer.status, plane(answer)) == (200, native_plane), hop
    # The control plane's paths are Python's, whatever they carry.
    with served.client(source=PROXY) as client:
        health = client.get("/healthz", headers={"X-Forwarded-For": "unknown"})
    assert (health.status_code, plane(health)) == (200, python_plane)
