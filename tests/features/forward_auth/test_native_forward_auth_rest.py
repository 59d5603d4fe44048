"""End to end: the forward-auth decisions the native door once left to Python, now native.

A real ``bastion serve`` (``trusted_proxies: [127.0.0.2]``) is asked at
``/auth/verify`` the way nginx asks it. Each decision is answered by the native door (told
by the request id's prefix, ``plane``) as Python's pipeline answered it (recorded in
``tests/vectors/twins/test_native_forward_auth_rest.json``): status, problem document, head
(but for the request id and the date), the ``gateway.denied`` row and the metric series.

- a judged URI not in normal form (``//``, ``/./``, ``..``, escapes, a fragment) is judged
  and audited in its normal form; one ``normalize_path`` refuses gets ``match``'s 400
  ``invalid_path`` (the row keeps Python's decoded path); no route: 404 (a path of
  bastion's own too: only a path to judge), the wrong method: 405 with ``Allow``;
- the judged head gets Python's ``framing``: no host to judge by, 400 ``invalid_host``;
- a judged header repeated, in any order with the other family: the same field named;
- a decision request with a body, and over HTTP/2 (curl, ALPN), is judged;
- a method-override header (``X-HTTP-Method-Override`` and friends) changes nothing: the
  original method is judged, natively, as the gateway door ignores them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest

from _support import EchoThread
from _support.gateway_server import (
    GatewayServer,
    RawResponse,
    gateway_counts,
    plane,
    request_bytes,
    row_parts,
    serve_gateway,
)
from _support.recorded import Recorded

ROUTES = """\
  - name: orders
    match: {path: /api/orders, methods: [GET, POST]}
    upstream: UPSTREAM
    auth: [api_key]
  - name: open
    match: {path: /open}
    upstream: UPSTREAM
    public: true
"""
# The proxy asks from 127.0.0.2: /metrics answers loopback clients that are not proxies.
PROXY = "127.0.0.2"
SETTINGS = f"trusted_proxies: [{PROXY}]\nforward_auth: {{headers: nginx}}\n"
#: What Python's pipeline answered to the decisions of this module.
RECORDED = Recorded(__name__)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, echo_upstream: EchoThread
) -> Iterator[GatewayServer]:
    routes = ROUTES.replace("UPSTREAM", echo_upstream.server.url)
    with serve_gateway(tmp_path_factory.mktemp("fa"), routes, SETTINGS) as server:
        yield server


def _decide(
    server: GatewayServer,
    fields: Sequence[tuple[str, str]],
    *,
    body: bytes = b"",
    host: str | None = "gw.test",
) -> RawResponse:
    return server.raw(
        request_bytes("GET", "/auth/verify", list(fields), body, host=host), source=PROXY
    )


def _case(
    fields: Sequence[tuple[str, str]], *, body: bytes = b"", host: str | None = "gw.test"
) -> str:
    """A decision's name in the records: its judged fields, its body's size, no Host."""
    case = "; ".join(f"{name}: {value}" for name, value in fields)
    if body:
        case += f" (a body of {len(body)} bytes)"
    if host is None:
        case += " (no Host)"
    return case


def _ask(method: str, uri: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("X-Original-Method", method), ("X-Original-URI", uri), *extra]


def _native_plane(server: GatewayServer) -> str:
    """The native plane's request-id prefix on this server (the control plane's differs)."""
    native = _decide(server, _ask("GET", "/open"))
    with server.client() as client:
        control = plane(client.get("/healthz"))
    assert native.status == 200
    assert plane(native) != control
    return plane(native)


def _alike(
    server: GatewayServer,
    fields: Sequence[tuple[str, str]],
    status: int,
    code: str,
    **kw: Any,
) -> RawResponse:
    """The native answer, as Python answered: the same status, code, body and head."""
    native_plane = _native_plane(server)
    native = _decide(server, fields, **kw)
    assert native.status == status, native.body
    assert plane(native) == native_plane
    assert native.json()["reason"] == code
    RECORDED.check(_case(fields, **kw), native)
    return native


def _parts(row: Any) -> list[Any]:
    """:func:`row_parts` as recorded (JSON)."""
    return list(orjson.loads(orjson.dumps(row_parts(row), default=str)))


def _rows_alike(server: GatewayServer, native: RawResponse, case: str) -> Any:
    """The native refusal's row, as Python recorded the same decision."""
    rows = server.denied([native.request_id])
    assert len(rows) == 1
    ours = rows[native.request_id]
    assert _parts(ours) == RECORDED["row " + case], case
    assert ours.data["door"] == "forward_auth"
    return ours


def test_a_uri_not_in_normal_form_is_judged_and_audited_in_it(served: GatewayServer) -> None:
    for uri in ("/api//./orders?x=1", "/api/v1/../orders#top", "/api/%6Frders?q=a#b"):
        native = _alike(served, _ask("GET", uri), 401, "unauthenticated")
        row = _rows_alike(served, native, _case(_ask("GET", uri)))
        assert (row.route, row.data["path"], row.data["step"]) == (
            "orders",
            "/api/orders",
            "authenticate",
        )


def test_match_refusals_of_the_judged_uri(served: GatewayServer) -> None:
    before = gateway_counts(served.url)
    bad = _alike(served, _ask("GET", "/api/%2Forders"), 400, "invalid_path")
    row = _rows_alike(served, bad, _case(_ask("GET", "/api/%2Forders")))
    # Python's row keeps the scope's decoded path (match never had a normal form).
    assert (row.route, row.data["path"], row.data["step"]) == (None, "/api//orders", "match")
    assert bad.json()["detail"] == (
        "The request path contains an encoded slash (%2F), which is refused."
    )
    above = _alike(served, _ask("GET", "/../api/orders"), 400, "invalid_path")
    row = _rows_alike(served, above, _case(_ask("GET", "/../api/orders")))
    assert row.data["path"] == "/../api/orders"
    missing = _alike(served, _ask("GET", "/nowhere/./x"), 404, "route_not_found")
    row = _rows_alike(served, missing, _case(_ask("GET", "/nowhere/./x")))
    assert row.data["path"] == "/nowhere/x"
    # A path of bastion's own is only a path to judge: matched against the routes.
    own = _alike(served, _ask("GET", "/admin/./users"), 404, "route_not_found")
    assert _rows_alike(served, own, _case(_ask("GET", "/admin/./users"))).data["path"] == (
        "/admin/users"
    )
    wrong = _alike(served, _ask("DELETE", "/api/orders"), 405, "method_not_allowed")
    assert wrong.header("allow") == "GET, HEAD, POST"
    _rows_alike(served, wrong, _case(_ask("DELETE", "/api/orders")))
    after = gateway_counts(served.url)
    expected = {"invalid_path": 2, "route_not_found": 2, "method_not_allowed": 1}
    for outcome, count in expected.items():
        grown = after.get(("(none)", outcome), 0) - before.get(("(none)", outcome), 0)
        assert grown == count, outcome


def test_framing_of_the_judged_head(served: GatewayServer) -> None:
    # No Host and no X-Forwarded-Host: the judged HTTP/1.1 request has no host.
    native = _alike(served, _ask("GET", "/api/orders"), 400, "invalid_host", host=None)
    row = _rows_alike(served, native, _case(_ask("GET", "/api/orders"), host=None))
    assert (row.route, row.data["step"], row.data["path"]) == (None, "framing", "/api/orders")
    # X-Forwarded-Host stands in for it: judged.
    judged = _decide(served, _ask("GET", "/api/orders", ("X-Forwarded-Host", "a")), host=None)
    assert (judged.status, judged.json()["reason"]) == (401, "unauthenticated")


def test_repeated_judged_headers_name_the_field_python_names(served: GatewayServer) -> None:
    cases = [
        # A repeat before the other family, and the other way round.
        (
            _ask("GET", "/api/orders", ("X-Original-Method", "GET"), ("X-Forwarded-Uri", "/")),
            "The request carries more than one X-Original-Method header.",
        ),
        (
            [("X-Forwarded-Method", "GET"), *_ask("GET", "/api/orders", ("X-Original-URI", "/"))],
            "The request carries X-Forwarded-Method, but forward_auth.headers is nginx",
        ),
        # Two repeated names.
        (
            _ask(
                "GET",
                "/api/orders",
                ("X-Forwarded-Host", "a"),
                ("X-Original-URI", "/x"),
                ("X-Forwarded-Host", "b"),
            ),
            "The request carries more than one X-Original-Uri header.",
        ),
    ]
    for fields, detail in cases:
        native = _alike(served, fields, 400, "forward_auth_ambiguous")
        assert native.json()["detail"].startswith(detail)
        _rows_alike(served, native, _case(fields))


def test_a_decision_request_with_a_body_is_judged(served: GatewayServer) -> None:
    native = _alike(served, _ask("POST", "/api/orders"), 401, "unauthenticated", body=b"hello")
    _rows_alike(served, native, _case(_ask("POST", "/api/orders"), body=b"hello"))
    allowed = _decide(served, _ask("GET", "/open"), body=b"x" * 1000)
    assert allowed.status == 200 and allowed.body == b""


OVERRIDES = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")


@pytest.mark.parametrize("override", OVERRIDES)
def test_a_method_override_header_is_not_believed(served: GatewayServer, override: str) -> None:
    native_plane = _native_plane(served)
    # The original method is judged: PUT is not one of the route's methods, whatever
    # the override names.
    refused = _decide(served, _ask("PUT", "/api/orders", (override, "GET")))
    assert (refused.status, plane(refused)) == (405, native_plane), refused.body
    assert refused.json()["reason"] == "method_not_allowed"
    assert refused.header("allow") == "GET, HEAD, POST"
    row = served.denied([refused.request_id])[refused.request_id]
    assert (row.route, row.data["door"], row.data["step"]) == (None, "forward_auth", "match")
    assert row.data["method"] == "PUT"
    # And an override of an allowed decision takes nothing away from it.
    allowed = _decide(served, _ask("GET", "/open", (override, "DELETE")))
    assert (allowed.status, plane(allowed)) == (200, native_plane)
    # An authenticated route: the original method's refusal (no credential), not a 405.
    unauthenticated = _decide(served, _ask("GET", "/api/orders", (override, "DELETE")))
    assert (unauthenticated.status, plane(unauthenticated)) == (401, native_plane)
    assert unauthenticated.json()["reason"] == "unauthenticated"


def _curl_h2(curl: str, url: str, headers: Sequence[tuple[str, str]]) -> tuple[int, str]:
    args = [curl, "-sk", "--http2", "--interface", PROXY, "-o", "/dev/null", "-D", "-", url]
    for name, value in headers:
        args[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(args, capture_output=True, timeout=30, check=True).stdout.decode()
    status = int(out.split(" ", 2)[1])
    rid = next(
        line.split(":", 1)[1].strip()
        for line in out.splitlines()
        if line.lower().startswith("x-request-id:")
    )
    return status, rid


def test_http2_decisions_are_native(served: GatewayServer) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (httpx has no h2 package here)")
    native_plane = _native_plane(served)
    url = served.url + "/auth/verify"
    status, rid = _curl_h2(curl, url, _ask("GET", "/open"))
    assert (status, rid.rsplit("-", 1)[0]) == (200, native_plane)
    # The host judged is the :authority: the route answers for any host.
    status, rid = _curl_h2(curl, url, _ask("GET", "/api/./orders"))
    assert (status, rid.rsplit("-", 1)[0]) == (401, native_plane)
    row = _parts(served.denied([rid])[rid])
    recorded = RECORDED["row http/2 " + _case(_ask("GET", "/api/./orders"))]
    # The user agent is this machine's curl's (its version is not recorded).
    assert str(row[7]).startswith("curl/")
    assert row[:7] + row[8:] == recorded[:7] + recorded[8:]
