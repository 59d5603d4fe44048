"""Route reload: the route table swapped atomically; requests in flight keep their generation.

Black-box, against one real ``bastion serve``: its configuration file is rewritten and
``bastion routes reload`` (pid file + SIGHUP) or a bare SIGHUP makes it reload. The tests
run in order on the one server (each starts from the table the previous left: ``a``, then
``b``), so they are one module of three steps of one story.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from _support import EchoThread, run_cli
from _support.gateway_edge import problem
from _support.gateway_server import GatewayServer, fresh_echo, gateway_fixture


def _route(name: str, upstream: str, extra: str = "") -> str:
    return f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {upstream}\n" + (
        f"    public: true\n{extra}"
    )


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


served = gateway_fixture(_route("a", "{echo}"), "")


def _rewrite(server: GatewayServer, routes: str) -> None:
    text = server.config.read_text()
    head = text[: text.index("routes:\n") + len("routes:\n")]
    server.config.write_text(head + routes)


def _reload(server: GatewayServer) -> None:
    result = run_cli(
        "routes", "reload", "-c", str(server.config), "--json", cwd=server.config.parent
    )
    assert result.returncode == 0, result.stderr


def _until(client: httpx.Client, path: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while client.get(path).status_code != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.05)


def test_reload_adds_and_removes_routes(served: GatewayServer, echo_upstream: EchoThread) -> None:
    echo = fresh_echo(echo_upstream)
    with served.client() as client:
        assert client.get("/a/x").status_code == 200
        connections = echo.connections
        _rewrite(served, _route("b", echo.url))
        _reload(served)
        _until(client, "/b/x", 200)
        assert problem(client.get("/a/x"))[:2] == (404, "route_not_found")
        assert client.get("/b/x").json()["path"] == "/b/x"
    # Pools are kept: the same upstream is reached on the pooled connection.
    assert echo.connections == connections


def test_invalid_routes_keep_the_current_table(served: GatewayServer) -> None:
    _rewrite(served, _route("b", "ftp://nope"))
    os.kill(served.proc.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
    # The server logs the refusal (its log is read when it stops); the table stays.
    with served.client() as client:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert client.get("/b/x").status_code == 200
            time.sleep(0.1)


def test_request_in_flight_finishes_on_its_generation(
    served: GatewayServer, echo_upstream: EchoThread
) -> None:
    echo = fresh_echo(echo_upstream)
    _rewrite(served, _route("b", echo.url))
    _reload(served)
    echo.delay = 2.0
    in_flight: list[httpx.Response] = []
    with served.client() as other:
        thread = threading.Thread(target=lambda: in_flight.append(other.get("/b/x")))
        thread.start()
        deadline = time.monotonic() + 10
        while not echo.received:  # the request reached the upstream: it is in flight
            assert time.monotonic() < deadline
            time.sleep(0.02)
        _rewrite(served, _route("c", echo.url))
        _reload(served)
        with served.client() as client:
            _until(client, "/b/x", 404)
        thread.join(10)
    (response,) = in_flight
    assert response.status_code == 200  # route "b" no longer exists, the request completed
    assert response.json()["path"] == "/b/x"
