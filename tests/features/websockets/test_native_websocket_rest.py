"""End to end: the upgrade requests the native core used to defer, now answered natively.

One ``bastion serve`` (native engine). Which plane answered is told by the request id's
per-plane prefix (for a refused handshake, the id in the document). What Python's server
made of an ``Upgrade`` decides the answer (Python's answers are recorded in
``tests/vectors/twins/test_native_websocket_rest.json``):

- a plain RFC 6455 handshake to a path no route takes: Python's ``match`` refuses it —
  ``404 route_not_found``, ``405 method_not_allowed`` with ``Allow`` — with the head of
  its ``websocket.http.response`` denial (``connection: close``, no request-id header);
  natively alike, byte for byte but the id and the date, one ``gateway.denied`` row each
  (door ``websocket``) and one count each in ``bastion_gateway_requests_total``;
- an ``Upgrade`` uvicorn does not read as a WebSocket handshake (``h2c``, ``websocket,
  h2c``, no ``Connection: upgrade``): a plain request, proxied without ``Upgrade`` (a
  hop-by-hop field), natively as by Python;
- a handshake uvicorn hands to ``websockets`` that is not a plain one: ``websockets``
  refuses it before bastion's code runs, in plain text (``405`` with ``Allow: GET``, ``400``
  for a missing or malformed key or version, ``426`` for another ``Upgrade`` list), and
  closes without an answer when it carries a body. The native core gives the same status
  and headers as a problem document (``invalid_websocket_handshake``, the detail
  ``websockets``' message; a handshake with a body: ``400``), audited (step ``framing``,
  door ``websocket``, no route) and counted under ``route="(none)"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_server import (
    GatewayServer,
    fresh_echo,
    gateway_fixture,
    plane,
    request_bytes,
)
from _support.recorded import Recorded, recorded_row

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WEBSOCKET = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}
RECORDED = Recorded(__name__)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


served = gateway_fixture(
    "  - name: live\n"
    "    match: {path: /api/live}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    "    websocket: true\n"
    "  - name: writes\n"
    "    match: {path: /api/writes, methods: [POST]}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    "    websocket: true\n"
    "  - name: plain\n"
    "    match: {path: /api/plain}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
)


def _case(request_line: str, headers: dict[str, str]) -> str:
    """A case's name in the recorded answers: the request line and the headers sent."""
    return " ".join([request_line, *(f"{k}: {v}" for k, v in headers.items())])


UNMATCHED = [
    ("/nowhere", 404, "route_not_found", None),
    ("/api/writes/x", 405, "method_not_allowed", "POST"),
]


def test_handshakes_no_route_takes_are_refused_natively_as_python_refused_them(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    before = served.counts()
    rids: dict[str, str] = {}
    for target, status, reason, allow in UNMATCHED:
        mine = served.raw(request_bytes("GET", target, WEBSOCKET))
        case = _case(f"GET {target}", WEBSOCKET)
        assert plane(mine) == native != python, target
        assert (mine.status, mine.json()["reason"]) == (status, reason)
        RECORDED.check(case, mine)
        # The denial head of an upgrade: no middleware headers, the connection closed.
        assert mine.header("connection") == "close"
        assert mine.header("x-request-id") is None
        assert mine.header("x-content-type-options") is None
        assert mine.header("allow") == allow
        rids[mine.request_id] = case
    assert not upstream.received
    rows = served.denied(set(rids))
    for mine_rid, case in rids.items():
        assert recorded_row(rows[mine_rid]) == RECORDED["row " + case], case
        assert rows[mine_rid].route is None
        assert rows[mine_rid].data["step"] == "match"
    after = served.counts()
    for _, _, reason, _ in UNMATCHED:
        label = ("(none)", reason)
        assert after.get(label, 0) - before.get(label, 0) == 1, label


NOT_WEBSOCKET = [
    ("/api/live", {**WEBSOCKET, "Upgrade": "h2c"}),
    ("/api/live", {**WEBSOCKET, "Upgrade": "websocket, h2c"}),
    ("/api/live", {k: v for k, v in WEBSOCKET.items() if k != "Connection"}),
    ("/api/plain", {"Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings",
                    "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}),
]  # fmt: skip


@pytest.mark.parametrize(("target", "headers"), NOT_WEBSOCKET)
def test_other_upgrades_are_plain_requests_proxied_natively(
    served: GatewayServer, echo_upstream: EchoThread, target: str, headers: dict[str, str]
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    mine = served.raw(request_bytes("GET", target, headers))
    recorded = RECORDED["proxied " + _case(f"GET {target}", headers)]
    assert mine.status == recorded["status"] == 200
    assert plane(mine) == native != python
    received = mine.json()["headers"]
    # Hop-by-hop: neither the upgrade nor what Connection names reaches the upstream.
    assert not {"upgrade", "connection", "http2-settings"} & set(received)
    # What the upstream saw of Python's request, the same.
    drop = ("x-bastion-request-id", "host")
    assert {k: v for k, v in received.items() if k not in drop} == recorded["headers"]
    assert len(upstream.received) == 1


REFUSED = [
    # (method, headers, body, status, detail, header)
    ("POST", WEBSOCKET, b"", 405, "unsupported HTTP method: POST.", ("allow", "GET")),
    ("GET", {**WEBSOCKET, "Sec-WebSocket-Key": "short"}, b"", 400,
     "invalid Sec-WebSocket-Key header: short.", None),
    ("GET", {k: v for k, v in WEBSOCKET.items() if k != "Sec-WebSocket-Key"}, b"", 400,
     "missing Sec-WebSocket-Key header.", None),
    ("GET", {**WEBSOCKET, "Sec-WebSocket-Version": "8"}, b"", 400,
     "invalid Sec-WebSocket-Version header: 8.", None),
    ("GET", {k: v for k, v in WEBSOCKET.items() if k != "Sec-WebSocket-Version"}, b"", 400,
     "missing Sec-WebSocket-Version header.", None),
]  # fmt: skip


def test_handshakes_websockets_refuses_are_refused_natively(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    before = served.counts()
    rids = []
    for method, headers, body, status, detail, header in REFUSED:
        mine = served.raw(request_bytes(method, "/api/live", headers, body))
        # Python's: `websockets`' own plain-text answer, before any of bastion's code.
        theirs = RECORDED[_case(f"{method} /api/live", headers)]
        assert theirs["status"] == status
        # Native: the same status and headers, as a problem document (its detail Python's).
        assert plane(mine) == native, detail
        assert mine.status == status
        problem = mine.json()
        assert (problem["reason"], problem["detail"]) == ("invalid_websocket_handshake", detail)
        assert theirs["body"] == f"Failed to open a WebSocket connection: {detail}\n" or (
            status == 400
            and theirs["body"].startswith(f"Failed to open a WebSocket connection: {detail[:-1]}")
        )
        assert mine.header("content-type") == "application/problem+json"
        assert mine.header("connection") == "close"
        if header is not None:
            assert mine.header(header[0]) == header[1]
            assert [header[0], header[1]] in theirs["headers"]
        rids.append(mine.request_id)
    # A handshake with a body: `websockets` closes without an answer; natively a 400.
    mine = served.raw(request_bytes("GET", "/api/live", WEBSOCKET, b"hello"))
    assert (mine.status, plane(mine)) == (400, native)
    assert mine.json()["detail"] == "A WebSocket handshake cannot carry a body."
    rids.append(mine.request_id)
    assert not upstream.received
    rows = served.denied(set(rids))
    for rid in rids:
        row = rows[rid]
        assert (row.reason, row.route, row.data["step"]) == (
            "invalid_websocket_handshake",
            None,
            "framing",
        )
        assert row.data["door"] == "websocket"
    after = served.counts()
    label = ("(none)", "other")  # a code Python's metrics do not know
    assert after.get(label, 0) - before.get(label, 0) == len(rids)
    assert python != native
