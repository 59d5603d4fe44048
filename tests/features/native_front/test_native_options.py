"""End to end: ``OPTIONS`` requests on a table where some route has CORS, answered natively.

Python's ``match`` matches a CORS preflight (``OPTIONS`` with ``Origin`` and one
``Access-Control-Request-Method``) by the method it asks for, and only a route with CORS
answers it; every other ``OPTIONS`` is an ordinary request, through every step. The native
core used to defer all of these; now each is answered natively (the request id's prefix),
as Python's pipeline answered the same request (recorded in
``tests/vectors/twins/test_native_options.json``):

- an ``OPTIONS`` without ``Origin`` or without ``Access-Control-Request-Method``, and a
  preflight to a route without CORS: proxied (the upstream sees ``OPTIONS``);
- a preflight asking for a method no route takes: matched by ``OPTIONS`` — the route's
  ``405 method_not_allowed`` with ``Allow``, or, where a route lists ``OPTIONS``, an
  ordinary request (its origin checked as an actual request's, then authenticated: ``401
  unauthenticated`` with the route's CORS headers, ``403 cors_origin_not_allowed``);
- a preflight asking for ``OPTIONS`` itself: ``403 cors_method_not_allowed``;
- an ``OPTIONS`` under no route: ``404 route_not_found``; one a route does not take:
  ``405`` with ``Allow``; a refused head (two ``Host`` fields): ``400 invalid_host``.

Each refusal is byte-identical to Python's (but for the request id and the date), one
``gateway.denied`` row with Python's step, reason, route and data, and counted in Python's
``bastion_gateway_requests_total`` series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_server import (
    GatewayServer,
    RawResponse,
    fresh_echo,
    gateway_fixture,
    request_bytes,
)
from _support.recorded import Recorded, recorded_row

APP = "https://app.example.com"
EVIL = "https://app.example.com.evil.com"
RECORDED = Recorded(__name__)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


served = gateway_fixture(
    "  - name: browser\n"
    "    match: {path: /api/browser, methods: [GET, POST]}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    f"    cors: {{origins: ['{APP}'], methods: [GET, POST]}}\n"
    "  - name: anything\n"
    "    match: {path: /api/anything}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    f"    cors: {{origins: ['{APP}']}}\n"
    "  - name: keyed\n"
    "    match: {path: /api/keyed, methods: [GET, OPTIONS]}\n"
    "    upstream: {echo}\n"
    "    auth: [api_key]\n"
    f"    cors: {{origins: ['{APP}'], methods: [GET]}}\n"
    "  - name: plain\n"
    "    match: {path: /api/plain}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    "  - name: reads\n"
    "    match: {path: /api/reads, methods: [GET]}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
)


def preflight(method: str, origin: str = APP) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method}


class Masked:
    """A response, with its request id and the plane that answered it."""

    def __init__(self, answer: RawResponse) -> None:
        self.answer = answer
        self.rid = answer.request_id
        self.plane = self.rid.rsplit("-", 1)[0]


def _case(target: str, headers: dict[str, str]) -> str:
    """A case's name in the recorded answers: the target and the headers sent."""
    return " ".join([target, *(f"{k}: {v}" for k, v in headers.items())])


PROXIED = [
    ("/api/anything/x", {}),  # no Origin, no request method
    ("/api/anything/x", {"Origin": APP}),  # no request method: an actual request
    ("/api/anything", {"Access-Control-Request-Method": "GET"}),  # no Origin
    ("/api/plain", preflight("GET")),  # a route without CORS
    ("/api/plain/x", preflight("DELETE", EVIL)),  # nothing judges the origin there
]


@pytest.mark.parametrize(("target", "headers"), PROXIED)
def test_ordinary_options_is_proxied_natively(
    served: GatewayServer, echo_upstream: EchoThread, target: str, headers: dict[str, str]
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    answer = served.raw(request_bytes("OPTIONS", target, headers))
    # What Python answered: proxied (the upstream saw its method and path), with the route's
    # CORS headers (a route with CORS adds them, one without none).
    recorded = RECORDED["proxied " + _case(target, headers)]
    assert answer.status == recorded["status"] == 200
    assert answer.request_id.rsplit("-", 1)[0] == native != python
    seen = answer.json()
    assert (seen["method"], seen["path"]) == (recorded["method"], recorded["path"])
    assert seen["method"] == "OPTIONS"
    assert len(upstream.received) == 1
    cors = [[n, v] for n, v in answer.headers if n.startswith("access-control-") or n == "vary"]
    assert cors == recorded["cors"]


REFUSED = [
    # A preflight asking for OPTIONS itself: refused for its method on a CORS route.
    ("/api/anything", preflight("OPTIONS"), 403, "cors_method_not_allowed", "anything", "cors"),
    ("/api/browser", preflight("OPTIONS"), 405, "method_not_allowed", None, "match"),
    # No route takes the asked method: matched by OPTIONS, which the route does not take.
    ("/api/browser/x", preflight("DELETE"), 405, "method_not_allowed", None, "match"),
    ("/api/reads", preflight("GET"), 405, "method_not_allowed", None, "match"),
    ("/api/reads", {}, 405, "method_not_allowed", None, "match"),
    # Under no route at all.
    ("/nowhere", preflight("GET"), 404, "route_not_found", None, "match"),
    ("/nowhere", {}, 404, "route_not_found", None, "match"),
    # A route that lists OPTIONS: an ordinary request — origin, then authentication.
    ("/api/keyed", preflight("PUT"), 401, "unauthenticated", "keyed", "authenticate"),
    ("/api/keyed", {"Origin": APP}, 401, "unauthenticated", "keyed", "authenticate"),
    ("/api/keyed", {}, 401, "unauthenticated", "keyed", "authenticate"),
    ("/api/keyed", preflight("PUT", EVIL), 403, "cors_origin_not_allowed", "keyed", "cors"),
    (
        "/api/keyed",
        {"Authorization": "Bearer bst_nope"},
        401,
        "invalid_api_key",
        "keyed",
        "authenticate",
    ),
]


def test_options_refusals_are_native_as_pythons_were(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    before = served.counts()
    expected: Counter[tuple[str, str]] = Counter()
    rids: dict[str, tuple[str, str, str | None, str]] = {}
    for target, headers, status, reason, route, step in REFUSED:
        mine = Masked(served.raw(request_bytes("OPTIONS", target, headers)))
        case = _case(target, headers)
        assert mine.plane == native != python, case
        assert (mine.answer.status, mine.answer.json()["reason"]) == (status, reason), case
        RECORDED.check(case, mine.answer)
        rids[mine.rid] = (case, reason, route, step)
        expected[(route or "(none)", reason)] += 1
    assert not upstream.received  # none of them reached the upstream
    # The ones that name headers: Allow of the route's methods, the CORS headers of a route.
    allow = Masked(served.raw(request_bytes("OPTIONS", "/api/browser/x", preflight("DELETE"))))
    assert allow.answer.header("allow") == "GET, HEAD, POST"
    keyed = Masked(served.raw(request_bytes("OPTIONS", "/api/keyed", preflight("PUT"))))
    assert keyed.answer.header("access-control-allow-origin") == APP
    assert keyed.answer.header("vary") == "Origin"
    itself = Masked(served.raw(request_bytes("OPTIONS", "/api/anything", preflight("OPTIONS"))))
    assert itself.answer.json()["detail"] == "'OPTIONS' is not allowed from this origin."
    assert itself.answer.header("vary") == "Origin"
    expected[("(none)", "method_not_allowed")] += 1
    expected[("keyed", "unauthenticated")] += 1
    expected[("anything", "cors_method_not_allowed")] += 1

    rows = served.denied(set(rids))
    for rid, (case, reason, route, step) in rids.items():
        assert rid in rows, reason
        assert recorded_row(rows[rid]) == RECORDED["row " + case], case
        row = rows[rid]
        assert (row.reason, row.route, row.data["step"]) == (reason, route, step)
        assert row.data["method"] == "OPTIONS"
    after = served.counts()
    for label, count in expected.items():
        assert after.get(label, 0) - before.get(label, 0) == count, label


def test_a_refused_head_is_refused_natively(served: GatewayServer) -> None:
    python, native = served.planes("/api/plain/x")
    two_hosts = request_bytes("OPTIONS", "/api/browser", {"Host": "gw.test", **preflight("GET")})
    mine = Masked(served.raw(two_hosts))
    assert mine.plane == native != python
    assert (mine.answer.status, mine.answer.json()["reason"]) == (400, "invalid_host")
    RECORDED.check("two Host fields", mine.answer)


def test_preflights_of_cors_routes_stay_answered(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    _, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    for target in ("/api/browser/x", "/api/anything"):
        answer = served.raw(request_bytes("OPTIONS", target, preflight("POST")))
        assert answer.status == 204
        assert answer.request_id.rsplit("-", 1)[0] == native
        assert answer.header("access-control-allow-origin") == APP
    # The keyed route lists OPTIONS, yet a preflight for GET is its CORS answer (no key).
    keyed = served.raw(request_bytes("OPTIONS", "/api/keyed", preflight("GET")))
    assert keyed.status == 204
    assert not upstream.received
