"""End to end: the last gateway requests the native core handed to the Python app, decided natively.

The Python app answers a gateway request it is handed ``503 gateway_unavailable`` (a safety
net). These requests used to get it; each is now decided by the native core (the request
id's per-plane prefix says which plane answered), and none reaches the app:

- an HTTP/1.0 WebSocket handshake: RFC 6455 §4.1 requires HTTP/1.1, so it is refused as
  ``websockets`` refuses a handshake it cannot take (``400 invalid_websocket_handshake``,
  the denial head of an upgrade, audited at step ``framing``);
- a WebSocket handshake ``websockets`` would read but the native door would not switch
  for: ``Upgrade: websocket`` beside another, empty ``Upgrade`` field (RFC 6455 §4.2.1's
  one field is the only shape taken: 400), a field that is not visible ASCII in
  ``Upgrade`` (426, ``Upgrade: websocket``) or ``Sec-WebSocket-Key`` /
  ``-Version`` (400): refused alike, ``invalid_websocket_handshake``;
- a CORS preflight carrying a body (chunked, or longer than the route's ``max_body``): its
  ``204``, as any preflight (Python's ``cors`` step answered before its ``body`` step);
- a head ``framing`` passes is taken whole: a chunked body to a path no route takes gets
  its ``404``; an HTTP/2 head of many ``cookie`` fields (one for Python's app, which gets
  them joined) is proxied;
- an API key whose stored IP allow-list names a scoped IPv6 network (``fe80::%eth0/64``,
  as Python's ``ipaddress`` prints it) is judged as Python judges it;
- connections hyper serves (after a chunked request; HTTP/2) get bastion's problem+json
  ``431 headers_too_large`` for a head over ``request_limits``, as the HTTP/1 loop gives
  it, and an HTTP/2 head within the limits but over hyper's default header list size (16
  KiB) is served.

The one state still handed to the app, a request before the first route table, never occurs
under ``bastion serve``: ``Runtime.open`` puts the table in force before any server starts
(pinned here; the listening socket reaches the front only after the app's start-up).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from _support import EchoThread
from _support.gateway_server import (
    GatewayServer,
    chunk,
    fresh_echo,
    gateway_fixture,
    h2_request,
    plane,
    request_bytes,
)
from bastion import _native
from bastion.runtime import Runtime
from bastion.settings import Settings

APP = "https://app.example.com"
MAX_HEADERS = 16
#: A plain RFC 6455 opening handshake but for its version.
HTTP10_HANDSHAKE = (
    b"GET /api/live HTTP/1.0\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.fixture(scope="module")
def echo_upstream(echo_module: EchoThread) -> EchoThread:
    """The module's echo (conftest), under the name ``gateway_fixture`` reads."""
    return echo_module


served = gateway_fixture(
    "  - name: live\n"
    "    match: {path: /api/live}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    "    websocket: true\n"
    "  - name: browser\n"
    "    match: {path: /api/browser, methods: [GET, POST]}\n"
    "    upstream: {echo}\n"
    "    public: true\n"
    "    max_body: 16\n"
    f"    cors: {{origins: ['{APP}'], methods: [GET, POST]}}\n"
    "  - name: keyed\n"
    "    match: {path: /api/keyed}\n"
    "    upstream: {echo}\n"
    "    auth: [api_key]\n"
    "  - name: plain\n"
    "    match: {path: /api/plain}\n"
    "    upstream: {echo}\n"
    "    public: true\n",
    f"request_limits: {{max_headers: {MAX_HEADERS}}}\n",
)


def test_an_http10_websocket_handshake_is_refused_natively(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    mine = served.raw(HTTP10_HANDSHAKE)
    assert plane(mine) == native != python
    assert mine.status == 400
    document = mine.json()
    assert (document["reason"], document["title"]) == (
        "invalid_websocket_handshake",
        "Invalid WebSocket handshake",
    )
    assert document["detail"] == "unsupported protocol; expected HTTP/1.1: HTTP/1.0."
    # The denial head of an upgrade: no middleware headers, the connection closed.
    assert mine.header("connection") == "close"
    assert mine.header("x-request-id") is None
    assert not upstream.received
    row = served.denied({mine.request_id})[mine.request_id]
    assert (row.reason, row.route) == ("invalid_websocket_handshake", None)
    assert (row.data["step"], row.data["door"]) == ("framing", "websocket")


def _handshake(*fields: bytes) -> bytes:
    """A handshake to the WebSocket route but for ``fields`` (``Upgrade`` and the key and
    version, each defaulting to a plain one's when no field of its name is given)."""
    names = {field.split(b":", 1)[0].lower() for field in fields}
    plain = {
        b"upgrade": b"Upgrade: websocket",
        b"sec-websocket-key": b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"sec-websocket-version": b"Sec-WebSocket-Version: 13",
    }
    lines = [
        b"GET /api/live HTTP/1.1",
        b"Host: gw.test",
        b"Connection: Upgrade",
        *fields,
        *(line for name, line in plain.items() if name not in names),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        (
            (b"Upgrade: ", b"Upgrade: websocket"),
            400,
            "invalid Upgrade header: 2 fields; send one Upgrade: websocket.",
        ),
        (
            (b"Upgrade: ,", b"Upgrade: websocket"),
            400,
            "invalid Upgrade header: 2 fields; send one Upgrade: websocket.",
        ),
        (
            (b"Upgrade: \xe9", b"Upgrade: websocket"),
            426,
            "invalid Upgrade header: \\xe9, websocket.",
        ),
        (
            (b"Sec-WebSocket-Key: \xe9\xe9",),
            400,
            "invalid Sec-WebSocket-Key header: \\xe9\\xe9.",
        ),
        (
            (b"Sec-WebSocket-Version: 1\xb3",),
            400,
            "invalid Sec-WebSocket-Version header: 1\\xb3.",
        ),
    ],
    ids=[
        "upgrade-split-empty",
        "upgrade-split-comma",
        "upgrade-obs-text",
        "key-obs-text",
        "version-obs-text",
    ],
)
def test_a_handshake_the_door_would_not_switch_for_is_refused_natively(
    served: GatewayServer,
    echo_upstream: EchoThread,
    fields: tuple[bytes, ...],
    status: int,
    detail: str,
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    mine = served.raw(_handshake(*fields))
    assert plane(mine) == native != python, mine.body
    assert mine.status == status
    document = mine.json()
    assert (document["reason"], document["detail"]) == ("invalid_websocket_handshake", detail)
    if status == 426:
        assert mine.header("upgrade") == "websocket"
    # The denial head of an upgrade, as its sibling refusals.
    assert mine.header("connection") == "close"
    assert mine.header("x-request-id") is None
    assert not upstream.received
    row = served.denied({mine.request_id})[mine.request_id]
    assert (row.reason, row.route) == ("invalid_websocket_handshake", None)
    assert (row.data["step"], row.data["door"]) == ("framing", "websocket")


def _preflight(body: bytes, framing: dict[str, str]) -> bytes:
    headers = {"Origin": APP, "Access-Control-Request-Method": "POST", **framing}
    return request_bytes("OPTIONS", "/api/browser/x", headers) + body


@pytest.mark.parametrize(
    ("body", "framing"),
    [
        (chunk(b"a body") + chunk(b""), {"Transfer-Encoding": "chunked"}),
        (b"x" * 100, {"Content-Length": "100"}),  # over the route's max_body (16)
    ],
    ids=["chunked", "over-max-body"],
)
def test_a_preflight_with_a_body_is_answered_natively(
    served: GatewayServer, echo_upstream: EchoThread, body: bytes, framing: dict[str, str]
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    plain = served.raw(_preflight(b"", {}))
    mine = served.raw(_preflight(body, framing))
    assert plane(mine) == native != python
    assert mine.status == plain.status == 204
    assert mine.header("access-control-allow-origin") == APP
    assert mine.header("access-control-allow-methods") == plain.header(
        "access-control-allow-methods"
    )
    assert not upstream.received  # a preflight is never proxied


def test_a_chunked_body_to_no_route_is_refused_natively(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = served.planes("/api/plain/x")
    upstream = fresh_echo(echo_upstream)
    body = chunk(b"hello") + chunk(b"")
    for target, status, reason in [
        ("/nowhere", 404, "route_not_found"),
        ("/api/browser", 405, "method_not_allowed"),
    ]:
        request = request_bytes("PUT", target, {"Transfer-Encoding": "chunked"}) + body
        mine = served.raw(request)
        assert plane(mine) == native != python, target
        assert (mine.status, mine.json()["reason"]) == (status, reason), target
    assert not upstream.received
    # And a chunked body to a route is proxied, as before.
    request = request_bytes("POST", "/api/plain/x", {"Transfer-Encoding": "chunked"}) + body
    proxied = served.raw(request)
    assert proxied.status == 200
    assert proxied.json()["body"] == "hello"


def test_a_scoped_ipv6_network_in_a_keys_allow_list_is_read_as_python_reads_it(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    python, native = served.planes("/api/plain/x")
    fresh_echo(echo_upstream)
    # Python's `ipaddress` keeps the scope id (`str(ip_network("fe80::%eth0/64"))`), which
    # changes nothing its `in` holds: the tests' 127.0.0.1 is outside, its 403.
    scoped = served.cli("keys", "create", "scoped", "--scope", "x", "--ip-allow", "fe80::%eth0/64")[
        "key"
    ]
    with served.client() as client:
        refused = client.get("/api/keyed", headers={"Authorization": f"Bearer {scoped}"})
        assert plane(refused) == native != python
        assert refused.status_code == 403
        assert refused.json()["reason"] == "api_key_ip_not_allowed"
        both = served.cli(
            "keys",
            "create",
            "both",
            "--scope",
            "x",
            "--ip-allow",
            "fe80::%eth0/64",
            "--ip-allow",
            "127.0.0.0/8",
        )["key"]
        allowed = client.get("/api/keyed/x", headers={"Authorization": f"Bearer {both}"})
        assert plane(allowed) == native
        assert allowed.status_code == 200
        assert allowed.json()["path"] == "/api/keyed/x"


def _many_fields(count: int) -> dict[str, str]:
    return {f"X-F{i}": str(i) for i in range(count)}


def test_a_head_over_the_limits_on_a_connection_hyper_serves_gets_bastions_431(
    served: GatewayServer,
) -> None:
    python, native = served.planes("/api/plain/x")
    # A chunked request hands the connection to hyper for the rest of it.
    first = request_bytes("POST", "/api/plain/x", {"Transfer-Encoding": "chunked"})
    first += chunk(b"one") + chunk(b"")
    second = request_bytes("GET", "/api/plain/x", _many_fields(MAX_HEADERS + 4))
    mine = served.raw(first + second, responses=2)
    assert mine.status == 431
    assert plane(mine) == native != python
    assert mine.json()["reason"] == "headers_too_large"
    row = served.denied({mine.request_id})[mine.request_id]
    assert (row.reason, row.data["step"]) == ("headers_too_large", "framing")


def _h2(served: GatewayServer, path: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    pseudo = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"gw.test")]
    return h2_request(served, [*pseudo, (b":path", path), *fields])


def test_http2_heads_within_the_limits_are_served_and_past_them_get_bastions_431(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    if not served.tls:
        pytest.skip("HTTP/2 is negotiated over TLS")
    _, native = served.planes("/api/plain/x")
    fresh_echo(echo_upstream)
    # 20 KiB of fields: past hyper's default header list size (16 KiB, its bare 431),
    # within request_limits (32 KiB): served.
    wide = [(f"x-w{i}".encode(), b"v" * 2000) for i in range(10)]
    seen = orjson.loads(_h2(served, b"/api/plain/wide", wide))
    assert seen["path"] == "/api/plain/wide"
    assert seen["headers"]["x-w9"] == "v" * 2000
    # Over max_header_bytes (36 KiB), or over max_headers: bastion's 431, not h2's bare one.
    for fields in (
        [(f"x-w{i}".encode(), b"v" * 3000) for i in range(12)],
        [(f"x-f{i}".encode(), b"1") for i in range(MAX_HEADERS + 4)],
    ):
        document = orjson.loads(_h2(served, b"/api/plain/x", fields))
        assert document["reason"] == "headers_too_large"
        assert document["request_id"].rsplit("-", 1)[0] == native
    # Many cookie fields are one for Python's app (the hop joins them): taken, proxied.
    cookies = [(b"cookie", f"c{i}=1".encode()) for i in range(MAX_HEADERS + 4)]
    seen = orjson.loads(_h2(served, b"/api/plain/cookies", cookies))
    assert seen["path"] == "/api/plain/cookies"


async def test_the_runtime_puts_a_route_table_in_force_before_any_server_starts(
    tmp_path: Path,
) -> None:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "tls": {"mode": "off"},
            "trusted_proxies": ["127.0.0.1"],
            "routes": [
                {
                    "name": "plain",
                    "match": {"path": "/api/plain"},
                    "upstream": "http://127.0.0.1:9",
                    "public": True,
                }
            ],
        }
    )
    _native.routes_unload()  # no table in force: every request would be handed over
    assert _native.routes_route("gw.test", "GET", "/api/plain") is None
    runtime = await Runtime.open(settings, announce=lambda _: None)
    try:
        # Opened, not started: the table the front decides with is already in force.
        assert _native.routes_route("gw.test", "GET", "/api/plain") is not None
    finally:
        await runtime.close()
