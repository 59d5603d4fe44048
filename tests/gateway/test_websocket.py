"""The WebSocket relay against a real websockets upstream, through a real ``bastion serve``.

A websockets client connects to the gateway (plain HTTP), which relays to a websockets echo
upstream. One server for the module, a route per limit; the audit-and-count test gets a
server of its own (its traffic counts are written when the server stops).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from _support.gateway_server import (
    GatewayServer,
    audit_rows,
    dead_url,
    request_bytes,
    route,
    serve_gateway,
)
from _support.waiting import wait_until

WEBSOCKET = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


class Upstream:
    """A websockets echo server in a thread; records paths and the close codes it saw."""

    def __init__(self) -> None:
        self.closed_with: list[int | None] = []
        self.paths: list[str] = []
        self.server: Server = serve(self.handler, "127.0.0.1", 0, compression=None)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        try:
            for message in ws:
                ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed_with.append(ws.close_code)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.socket.getsockname()[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    try:
        yield up
    finally:
        up.close()


def _routes(url: str) -> str:
    ws = {"enabled": True, "max_message_size": 1024, "idle_timeout": 30, "max_duration": 60}
    return "".join(
        [
            route("ws", url, path="/ws", websocket=ws),
            route("ws-idle", url, path="/idle", websocket={**ws, "idle_timeout": 0.2}),
            route("ws-small", url, path="/small", websocket={**ws, "max_message_size": 8}),
            route("ws-down", dead_url(), path="/down", websocket=ws),
        ]
    )


SETTINGS = "tls: off\ntrusted_proxies: [192.0.2.1]\n"


@pytest.fixture(scope="module")
def served(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    with serve_gateway(tmp_path_factory.mktemp("ws"), _routes(upstream.url), SETTINGS) as server:
        yield server


def ws_url(served: GatewayServer, path: str) -> str:
    return f"ws://127.0.0.1:{served.port}{path}"


def test_messages_relayed_and_client_close_reaches_upstream(
    served: GatewayServer, upstream: Upstream
) -> None:
    before = len(upstream.closed_with)
    with connect(ws_url(served, "/ws/a?x=1"), compression=None) as ws:
        assert ws.response is not None and ws.response.status_code == 101
        ws.send("hi")
        assert ws.recv(10) == "hi"
        ws.send(b"\x01")
        assert ws.recv(10) == b"\x01"
        ws.close(4002)
    assert upstream.paths[-1] == "/ws/a?x=1"
    wait_until(lambda: len(upstream.closed_with) > before, "the close reaching the upstream")
    assert upstream.closed_with[-1] == 4002


def test_idle_connection_is_closed(served: GatewayServer) -> None:
    with (
        connect(ws_url(served, "/idle"), compression=None) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "idle timeout")


def test_too_big_message_closes_with_1009(served: GatewayServer) -> None:
    with connect(ws_url(served, "/small"), compression=None) as ws:
        ws.send("x" * 9)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1009, "message too big")


def test_unreachable_upstream_is_refused_before_accept(served: GatewayServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(served, "/down"), compression=None, open_timeout=10)
    response = refused.value.response
    assert response.status_code == 502
    doc = orjson.loads(response.body or b"{}")
    assert (doc["reason"], doc["detail"]) == (
        "upstream_unavailable",
        "The upstream could not be reached.",
    )


def test_denial_is_an_http_response_with_the_extension(served: GatewayServer) -> None:
    # Python's denial of an upgrade is a `websocket.http.response`: an HTTP answer, never
    # an accepted-then-closed socket.
    answer = served.raw(request_bytes("GET", "/nope", WEBSOCKET))
    assert answer.status == 404
    assert answer.header("connection") == "close"
    assert answer.json()["reason"] == "route_not_found"


def test_upgrades_are_audited_and_counted_by_the_one_runner(
    upstream: Upstream, tmp_path: Path
) -> None:
    # Design rule 14: every door into a decision goes through the runner that audits,
    # counts and traces it; an upgrade is the "websocket" door.
    with serve_gateway(tmp_path, _routes(upstream.url), SETTINGS) as server:
        refused = server.raw(request_bytes("GET", "/nope", WEBSOCKET))
        assert refused.status == 404
        with connect(ws_url(server, "/ws"), compression=None) as ws:
            ws.close(1000)
        wait_until(lambda: sum(server.counts().values()) == 2, "two counted connections")
        counts = {key: n for key, n in server.counts().items() if n}
        denied = server.denied({refused.request_id})
    assert counts == {("(none)", "route_not_found"): 1, ("ws", "allowed"): 1}
    [row] = denied.values()
    assert (row.type, row.reason) == ("gateway.denied", "route_not_found")
    assert row.data["door"] == "websocket" and row.data["step"] == "match"
    # The allowed upgrade is counted in the traffic aggregates (written at shutdown).
    traffic = audit_rows(tmp_path, "gateway.traffic")
    assert [(r.route, r.data["principal"], r.data["count"]) for r in traffic.values()] == [
        ("ws", "anonymous", 1)
    ]
