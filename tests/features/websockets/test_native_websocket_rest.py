"""End to end: the upgrade requests the native core used to defer, now answered natively.

One ``bastion serve`` (native engine). Which plane answered is told by the request id's
per-plane prefix (for a refused handshake, the id in the document); Python's twin of each
is the same request with a method-override header, which the native core defers and
Python ignores. What Python's server makes of an ``Upgrade`` decides the answer:

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
    DEFER,
    GatewayServer,
    RawResponse,
    fresh_echo,
    gateway_fixture,
    request_bytes,
    row_parts,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WEBSOCKET = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


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


def planes(server: GatewayServer) -> tuple[str, str]:
    """(Python's request id prefix, the native plane's)."""
    with server.client() as client:
        python = client.get("/healthz").headers["x-request-id"].rsplit("-", 1)[0]
        native = client.get("/api/plain/x").headers["x-request-id"].rsplit("-", 1)[0]
    assert python != native
    return python, native


def prefix(answer: RawResponse) -> str:
    return answer.request_id.rsplit("-", 1)[0]


def masked(answer: RawResponse) -> tuple[bytes, bytes]:
    """(head, body) without the date and the request id (the id is in the document)."""
    rid = answer.request_id.encode()
    head = b"\r\n".join(
        line
        for line in answer.head.split(b"\r\n")
        if line.partition(b":")[0].lower() not in (b"date", b"x-request-id")
    )
    body = answer.body.replace(rid, b"RID")
    length = b"content-length: %d" % len(answer.body)
    return head.replace(length, b"content-length: N"), body


UNMATCHED = [
    ("/nowhere", 404, "route_not_found", None),
    ("/api/writes/x", 405, "method_not_allowed", "POST"),
]


def test_handshakes_no_route_takes_are_refused_natively_as_python_refuses_them(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = planes(served)
    upstream = fresh_echo(echo_upstream)
    before = served.counts()
    rids: dict[str, str] = {}
    for target, status, reason, allow in UNMATCHED:
        mine = served.raw(request_bytes("GET", target, WEBSOCKET))
        theirs = served.raw(request_bytes("GET", target, {**WEBSOCKET, **DEFER}))
        assert (prefix(mine), prefix(theirs)) == (native, python), target
        assert (mine.status, mine.json()["reason"]) == (status, reason)
        assert masked(mine) == masked(theirs), target
        # The denial head of an upgrade: no middleware headers, the connection closed.
        assert mine.header("connection") == "close"
        assert mine.header("x-request-id") is None
        assert mine.header("x-content-type-options") is None
        assert mine.header("allow") == allow
        rids[mine.request_id] = theirs.request_id
    assert not upstream.received
    rows = served.denied(set(rids) | set(rids.values()))
    for mine_rid, their_rid in rids.items():
        assert row_parts(rows[mine_rid]) == row_parts(rows[their_rid])
        assert rows[mine_rid].route is None
        assert rows[mine_rid].data["step"] == "match"
    after = served.counts()
    for _, _, reason, _ in UNMATCHED:
        label = ("(none)", reason)
        assert after.get(label, 0) - before.get(label, 0) == 2, label


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
    python, native = planes(served)
    upstream = fresh_echo(echo_upstream)
    mine = served.raw(request_bytes("GET", target, headers))
    theirs = served.raw(request_bytes("GET", target, {**headers, **DEFER}))
    assert (mine.status, theirs.status) == (200, 200)
    assert (prefix(mine), prefix(theirs)) == (native, python)
    seen = [mine.json()["headers"], theirs.json()["headers"]]
    for received in seen:
        # Hop-by-hop: neither the upgrade nor what Connection names reaches the upstream.
        assert not {"upgrade", "connection", "http2-settings"} & set(received)
    drop = ("x-bastion-request-id", "host")
    assert [{k: v for k, v in s.items() if k not in drop} for s in seen] == [
        {k: v for k, v in seen[1].items() if k not in drop}
    ] * 2
    assert len(upstream.received) == 2


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
    python, native = planes(served)
    upstream = fresh_echo(echo_upstream)
    before = served.counts()
    rids = []
    for method, headers, body, status, detail, header in REFUSED:
        mine = served.raw(request_bytes(method, "/api/live", headers, body))
        theirs = served.raw(request_bytes(method, "/api/live", {**headers, **DEFER}, body))
        # Python's: `websockets`' own plain-text answer, before any of bastion's code.
        assert theirs.status == status
        assert theirs.body.decode() == f"Failed to open a WebSocket connection: {detail}\n" or (
            status == 400
            and theirs.body.decode().startswith(
                f"Failed to open a WebSocket connection: {detail[:-1]}"
            )
        )
        # Native: the same status and headers, as a problem document.
        assert prefix(mine) == native, detail
        assert mine.status == status
        problem = mine.json()
        assert (problem["reason"], problem["detail"]) == ("invalid_websocket_handshake", detail)
        assert mine.header("content-type") == "application/problem+json"
        assert mine.header("connection") == "close"
        if header is not None:
            assert (mine.header(header[0]), theirs.header(header[0])) == (header[1], header[1])
        rids.append(mine.request_id)
    # A handshake with a body: `websockets` closes without an answer; natively a 400.
    mine = served.raw(request_bytes("GET", "/api/live", WEBSOCKET, b"hello"))
    assert (mine.status, prefix(mine)) == (400, native)
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
