"""End to end: the refusals of ``match``, ``body`` and ``authorize``, rendered natively alike.

One ``bastion serve`` (native engine); which plane answered is told by the request id's
per-plane prefix. Each refusal is sent over a raw socket and answered by the native plane
byte for byte as Python's pipeline answered it (but for the request id and the date; the
answers, and Python's audit rows, are recorded in
``tests/vectors/twins/test_native_authz_match.json``); it never reaches the upstream, and
is one ``gateway.denied`` audit row with Python's step, reason, route, identity and data,
and one count in Python's ``bastion_gateway_requests_total`` series:

- ``authorize``: ``403 insufficient_scope`` (per-method scopes, with its RFC 6750 challenge
  and the route's CORS headers), ``route_not_allowed`` (a key restricted to other routes),
  ``missing_role``, ``claim_mismatch``;
- ``match``: ``404 route_not_found`` for a path under no route (a path of the control plane
  still reaches Python), ``405 method_not_allowed`` with ``Allow``, ``400 invalid_path`` for
  the paths ``normalize_path`` refuses (``..`` above the root, ``..;``, overlong);
- ``body``: a declared ``Content-Length`` over the route's ``max_body``, ``413
  body_too_large`` (with the route's CORS headers; over 64 KiB, unread, the connection
  closed after it);
- a WebSocket upgrade to a route without ``websocket``: ``403 websocket_not_allowed``; and
  every refusal of an upgrade (here a 403 and a 401) as Python's ``websocket.http.response``
  denial renders it: the problem's own head, ``connection: close``, no request-id header.

Path tricks (``/api/../admin``, ``%2e%2e``, ``%2f``, ``//``, ``;`` parameters) get the same
answer as Python's, whichever plane gives it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread
from _support.gateway_server import audit_rows, gateway_counts, raw_request, row_parts
from _support.native import cli_json, migrated_config, plane
from _support.recorded import Recorded

APP = "https://app.example.com"
RECORDED = Recorded(__name__)
WEBSOCKET = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, echo_module: EchoThread
) -> Iterator[tuple[BastionProcess, Path, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("native-authz")
    echo = echo_module.server.url
    config = migrated_config(
        tmp,
        "  - name: orders\n"
        "    match: {path: /api/orders, methods: [GET, POST]}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    scopes: {GET: [orders:read], POST: [orders:write, orders:read]}\n"
        f"    cors: {{origins: ['{APP}']}}\n"
        "    max_body: 16\n"
        "  - name: billing\n"
        "    match: {path: /api/billing}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    scopes: [billing:read]\n"
        "  - name: staff\n"
        "    match: {path: /api/staff}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    roles: [admin, ops]\n"
        "  - name: gold\n"
        "    match: {path: /api/gold}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    claims: {tier: gold}\n"
        "  - name: live\n"
        "    match: {path: /api/live}\n"
        f"    upstream: {echo}\n"
        "    auth: [api_key]\n"
        "    scopes: [live:read]\n"
        "    websocket: true\n"
        "  - name: open\n"
        "    match: {path: /api/open}\n"
        f"    upstream: {echo}\n"
        "    public: true\n",
    )
    reader = cli_json(config, "keys", "create", "reader", "--scope", "orders:read")
    restricted = cli_json(
        config,
        "keys",
        "create",
        "restricted",
        "--scope",
        "orders:read",
        "--scope",
        "billing:read",
        "--route",
        "orders",
    )
    keys = {"reader": reader["key"], "restricted": restricted["key"]}
    with BastionProcess("-c", str(config), cwd=tmp) as proc:
        yield proc, tmp, keys


def raw(proc: BastionProcess, request: bytes) -> tuple[bytes, bytes]:
    """Send one raw request; return (response head, body; none for HEAD)."""
    answer = raw_request(proc.port, request, tls=proc.url.startswith("https"))
    return answer.head, answer.body


def request_bytes(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: gw.test",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Answer:
    """A response head and body, with the request id and the date masked."""

    def __init__(self, head: bytes, body: bytes) -> None:
        kept = []
        self.rid = ""
        for line in head.split(b"\r\n"):
            name = line.partition(b":")[0].lower()
            if name == b"x-request-id":
                self.rid = line.partition(b":")[2].strip().decode()
            elif name != b"date":
                kept.append(line)
        if not self.rid:
            # A refused WebSocket handshake (Python's `websocket.http.response`): the id
            # is in the document only.
            found = re.search(rb'"request_id":"([^"]+)"', body)
            self.rid = found.group(1).decode() if found else ""
        self.body = body.replace(self.rid.encode(), b"RID") if self.rid else body
        if self.rid.encode() in body:
            # The length of the body without its request id (ids differ in length).
            kept = [
                b"content-length: %d" % len(self.body)
                if line.lower().startswith(b"content-length:")
                else line
                for line in kept
            ]
        self.head = b"\r\n".join(kept)
        self.status = int(head.split(b" ", 2)[1])
        self.plane = self.rid.rsplit("-", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.lower() == name:
                return value.strip()
        return None


def ask(
    proc: BastionProcess, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> Answer:
    """The answer to the request as sent."""
    return Answer(*raw(proc, request_bytes(method, target, headers, body)))


def _case(method: str, target: str, headers: dict[str, str]) -> str:
    """A case's name: the request line (an overlong target cut) and its header names."""
    shown = target if len(target) < 80 else f"{target[:20]}...({len(target)})"
    return " ".join([method, shown, *headers])


def _recorded(answer: Answer) -> dict[str, Any]:
    """An answer as recorded: its status, head (request id and date left out) and body (in
    what the echo upstream saw, its address and the key's id stood for by placeholders)."""
    body = re.sub(rb'"host":"127\.0\.0\.1:\d+"', b'"host":"UPSTREAM"', answer.body)
    found = re.search(rb'"x-bastion-key-id":"([^"]+)"', body)
    if found:
        body = body.replace(found.group(1), b"KEY_ID")
    return {"status": answer.status, "head": answer.head.decode(), "body": body.decode()}


def _row(row: Any) -> list[Any]:
    """An audit row's :func:`row_parts` as recorded: the key's id stood for by ``KEY_ID``."""
    parts = orjson.loads(orjson.dumps(row_parts(row), default=str))
    if row.key_id:
        parts = orjson.loads(orjson.dumps(parts).replace(row.key_id.encode(), b"KEY_ID"))
    return list(parts)


def planes(client: httpx.Client) -> tuple[str, str]:
    """(Python's request id prefix, the native plane's)."""
    python = plane(client.get("/healthz"))
    native = plane(client.get("/api/open/x"))
    assert python != native
    return python, native


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _check(native: Answer, case: str, planes: tuple[str, str], status: int, reason: str) -> None:
    _, native_plane = planes
    assert native.plane == native_plane, (native.head, reason)
    assert native.status == status, (native.head, native.body)
    assert _recorded(native) == RECORDED[case], case
    assert f'"reason":"{reason}"'.encode() in native.body or native.head.startswith(b"HTTP/1.1 403")


def test_refusals_are_native_byte_identical_audited_and_metered(
    served: tuple[BastionProcess, Path, dict[str, str]], echo_module: EchoThread
) -> None:
    proc, tmp, keys = served
    reader, restricted = _bearer(keys["reader"]), _bearer(keys["restricted"])
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        both = planes(client)
        # A key's first request is Python's (it looks the key up and pushes it).
        for key in (reader, restricted):
            assert client.get("/api/orders/1", headers=key).status_code == 200
    before = len(echo_module.server.received)
    counts_before = gateway_counts(proc.url)
    cases: list[tuple[str, str, dict[str, str], bytes, int, str, str | None]] = [
        # authorize
        (
            "POST",
            "/api/orders/1",
            {**reader, "Origin": APP},
            b"{}",
            403,
            "insufficient_scope",
            "orders",
        ),
        ("GET", "/api/billing", reader, b"", 403, "insufficient_scope", "billing"),
        ("HEAD", "/api/billing/x", reader, b"", 403, "insufficient_scope", "billing"),
        ("GET", "/api/billing/1", restricted, b"", 403, "route_not_allowed", "billing"),
        ("GET", "/api/staff", reader, b"", 403, "missing_role", "staff"),
        ("DELETE", "/api/gold/1", reader, b"", 403, "claim_mismatch", "gold"),
        # body
        ("POST", "/api/orders", {"Origin": APP}, b"x" * 17, 413, "body_too_large", "orders"),
        # match
        ("GET", "/nothing/here?x=1", {}, b"", 404, "route_not_found", None),
        ("GET", "/", reader, b"", 404, "route_not_found", None),
        ("DELETE", "/api/orders/1", {"Origin": APP}, b"", 405, "method_not_allowed", None),
        ("PUT", "/api/orders", {}, b"{}", 405, "method_not_allowed", None),
        ("GET", "/api/../../etc/passwd", {}, b"", 400, "invalid_path", None),
        ("GET", "/api/orders/..;/x", {}, b"", 400, "invalid_path", None),
        ("GET", "/api/.;x/orders", {}, b"", 400, "invalid_path", None),
        ("GET", "/api/" + "a" * 8200, {}, b"", 400, "invalid_path", None),
        # a WebSocket upgrade to a route without websocket
        ("GET", "/api/open/ws", WEBSOCKET, b"", 403, "websocket_not_allowed", "open"),
        # The refusals of a WebSocket route's upgrade: Python's `websocket.http.response`
        # denial (no middleware headers, `connection: close`), natively alike.
        ("GET", "/api/live", {**WEBSOCKET, **reader}, b"", 403, "insufficient_scope", "live"),
        (
            "GET",
            "/api/live",
            {**WEBSOCKET, "Authorization": "Bearer bst_nope"},
            b"",
            401,
            "invalid_api_key",
            "live",
        ),
    ]
    rids: dict[str, tuple[str, str]] = {}
    expected: dict[tuple[str, str], int] = {}
    for method, target, headers, body, status, reason, route in cases:
        case = f"{reason}: {_case(method, target, headers)}"
        native = ask(proc, method, target, headers, body)
        _check(native, case, both, status, reason)
        if method == "HEAD":
            assert native.body == b"" and native.header(b"content-length") != b"0"
        rids[native.rid] = (case, reason)
        label = (route or "(none)", reason)
        expected[label] = expected.get(label, 0) + 1
        if "Upgrade" in headers:
            assert native.header(b"connection") == b"close"
            assert native.header(b"x-content-type-options") is None
        if reason == "insufficient_scope":
            challenge = native.header(b"www-authenticate") or b""
            assert challenge.startswith(b'Bearer realm="bastion", error="insufficient_scope"')
        if method == "POST" and route == "orders":
            assert native.header(b"access-control-allow-origin") == APP.encode()
        if reason == "method_not_allowed":
            assert native.header(b"allow") == b"GET, HEAD, POST"
            assert native.header(b"access-control-allow-origin") is None  # before "cors"
    # A declared body over max_body and over what a connection drains (64 KiB): the same
    # 413, unread, and the connection closed after it (test_native_framing.py).
    big = Answer(*raw(proc, request_bytes("POST", "/api/orders", {"Origin": APP}, b"x" * 70_000)))
    assert (big.status, big.plane) == (413, both[1])
    assert big.header(b"connection") == b"close"
    expected[("orders", "body_too_large")] += 1
    # ... with a credential too: never proxied past max_body.
    headers = {**reader, "Origin": APP}
    big = Answer(*raw(proc, request_bytes("POST", "/api/orders", headers, b"x" * 70_000)))
    assert (big.status, big.plane) == (413, both[1])
    expected[("orders", "body_too_large")] += 1
    assert len(echo_module.server.received) == before, "the upstream saw a refused request"

    # One gateway.denied row each, as Python recorded it.
    rows = audit_rows(tmp, "gateway.denied", set(rids))
    for native_rid, (case, reason) in rids.items():
        assert native_rid in rows, reason
        assert _row(rows[native_rid]) == RECORDED["row " + case], case
        assert rows[native_rid].reason == reason
    steps = {rows[rid].reason: rows[rid].data["step"] for rid in rids}
    assert steps == {
        "insufficient_scope": "authorize",
        "route_not_allowed": "authorize",
        "missing_role": "authorize",
        "claim_mismatch": "authorize",
        "body_too_large": "body",
        "route_not_found": "match",
        "method_not_allowed": "match",
        "invalid_path": "match",
        "websocket_not_allowed": "match",
        "invalid_api_key": "authenticate",
    }

    # And one count each in Python's series, whichever plane answered.
    counts = gateway_counts(proc.url)

    def delta(label: tuple[str, str]) -> float:
        return counts.get(label, 0) - counts_before.get(label, 0)

    for label, count in expected.items():
        if label[1] == "websocket_not_allowed":
            # Python folds this code into "other" until it has imported its module (it
            # serves no upgrade here) and a minute passed; the native plane always does.
            assert delta(("open", "other")) >= 1, label
            assert delta(("open", "other")) + delta(label) == count, label
            continue
        assert delta(label) == count, label


def test_path_tricks_get_pythons_answer(
    served: tuple[BastionProcess, Path, dict[str, str]], echo_module: EchoThread
) -> None:
    proc, _, keys = served
    key = _bearer(keys["reader"])
    with httpx.Client(base_url=proc.url, verify=False, timeout=10) as client:
        python_plane, native_plane = planes(client)
    before = len(echo_module.server.received)
    native_too = {
        "/api/orders/../../../etc",  # above the root: 400
        "/api/orders/..;/billing",  # a dot segment with a parameter: 400
        "/nothing/../..",
    }
    for target in (
        "/api/../admin",  # the control plane's, resolved by the app
        "/api/orders/../../admin/api/v1/keys",
        "/api/%2e%2e/admin",
        "/api/%2E%2E/%2e%2e/x",
        "/api/orders%2f..%2fbilling",
        "/api/orders%2F1",
        "/api/orders/%5c",
        "/api/orders/%00",
        "/api/orders/%zz",
        "//api/orders/1",
        "/api//orders/1",
        "/api/./orders/1",
        "/api;x/orders",
        "/api/orders;v=1/1",
        "/%61pi/orders/1",
        *native_too,
    ):
        native = ask(proc, "GET", target, key)
        assert _recorded(native) == RECORDED[_case("GET", target, {})], target
        if target in native_too:
            assert native.plane == native_plane, target
        if target.startswith("/api/../admin") or "admin/api" in target:
            assert native.plane == python_plane, target  # the control plane answered
    # Every refusal above, and nothing but requests Python normalised and allowed, went upstream.
    assert all(r.path.startswith("/api/orders") for r in list(echo_module.server.received)[before:])
