"""Several targets per route over real sockets: failover, ejection, no retry for POST.

One ``bastion serve`` for the module, a route per case, its targets echo upstreams, dead
ports (nothing listens) and an upstream that hangs up without answering. A target killed
or ejected is brought back on its port to show what the gateway does with it next.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from _support import EchoThread
from _support.gateway_server import (
    GatewayServer,
    RawUpstream,
    dead_url,
    fresh_echo,
    route,
    serve_gateway,
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class Upstreams:
    """The module's upstreams: echoes ``a`` and ``b`` (shared by routes, told apart by the
    path), ``c`` and ``d`` (the route whose target is killed), ``slow`` (answers after 2 s),
    a hang-up upstream and dead URLs."""

    def __init__(self) -> None:
        self.a, self.b, self.c, self.d = (EchoThread() for _ in range(4))
        self.slow = EchoThread()
        self.slow.server.delay = 2.0
        self.hangup = RawUpstream(None)
        self.dead = {name: dead_url() for name in ("post", "down1", "down2", "policy")}
        self.revived: list[EchoThread] = []

    def revive(self, url: str) -> EchoThread:
        """An echo listening again on ``url``'s port."""
        echo = EchoThread(port=_port(url))
        self.revived.append(echo)
        return echo

    def close(self) -> None:
        for echo in (self.a, self.b, self.d, self.slow, *self.revived):
            echo.close()
        if self.c.thread.is_alive():
            self.c.close()
        self.hangup.close()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    ups = Upstreams()
    try:
        yield ups
    finally:
        ups.close()


@pytest.fixture(scope="module")
def served(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    u = upstreams
    text = "".join(
        [
            route("rr", [u.a.server.url, u.b.server.url]),
            route(
                "kill",
                [u.c.server.url, u.d.server.url],
                health={"failures": 2, "cooldown": 30},
            ),
            route("post", [u.dead["post"], u.a.server.url], health={"failures": 5}),
            route("hang", [u.hangup.url, u.a.server.url]),
            route(
                "alldown",
                [u.dead["down1"], u.dead["down2"]],
                health={"failures": 1, "cooldown": 30},
            ),
            route("timed", [u.slow.server.url], read_timeout=0.2, connect_timeout=1.0),
            route(
                "policy",
                [u.dead["policy"], u.a.server.url],
                health={"failures": 4, "cooldown": 2, "max_cooldown": 60},
            ),
        ]
    )
    directory = tmp_path_factory.mktemp("targets")
    with serve_gateway(directory, text, "tls: off\ntrusted_proxies: [192.0.2.1]\n") as server:
        yield server


@pytest.fixture
def gateway(served: GatewayServer) -> Iterator[httpx.Client]:
    with served.client() as client:
        yield client


def _paths(echo: EchoThread, prefix: str) -> list[str]:
    return [r.path for r in echo.server.received if r.path.startswith(prefix)]


def _problem(response: httpx.Response) -> tuple[int, str, str]:
    doc = response.json()
    assert doc["status"] == response.status_code
    return response.status_code, doc["reason"], doc["detail"]


def test_round_robin_spreads_requests(gateway: httpx.Client, upstreams: Upstreams) -> None:
    for _ in range(4):
        assert gateway.get("/rr/x").status_code == 200
    assert [len(_paths(e, "/rr/")) for e in (upstreams.a, upstreams.b)] == [2, 2]


def test_killed_target_is_skipped_and_get_is_retried(
    gateway: httpx.Client, upstreams: Upstreams
) -> None:
    first, second = upstreams.c, upstreams.d
    url = first.server.url
    first.close()  # "kill one": connections to it are refused from now on
    for _ in range(6):
        assert gateway.get("/kill/x").status_code == 200
    assert len(_paths(second, "/kill/")) == 6
    # After 2 connection failures the dead target is ejected (for 30 s): back on its port,
    # it gets no request.
    back = upstreams.revive(url)
    for _ in range(4):
        assert gateway.get("/kill/y").status_code == 200
    assert _paths(back, "/kill/") == []
    assert len(_paths(second, "/kill/")) == 10


def test_post_is_never_retried_on_another_target(
    gateway: httpx.Client, upstreams: Upstreams
) -> None:
    good = upstreams.a
    # round-robin starts with the dead one
    assert _problem(gateway.post("/post/x", content=b"{}"))[:2] == (502, "upstream_unavailable")
    assert _paths(good, "/post/") == []  # not retried
    assert gateway.post("/post/x", content=b"{}").status_code == 200  # next in turn
    assert _paths(good, "/post/") == ["/post/x"]


def test_request_sent_then_connection_dropped_is_not_retried(
    gateway: httpx.Client, upstreams: Upstreams
) -> None:
    assert _problem(gateway.post("/hang/x", content=b"{}")) == (
        502,
        "upstream_unavailable",
        "The upstream closed the connection without answering.",
    )
    assert upstreams.hangup.requests == [b"POST /hang/x HTTP/1.1"]  # exactly one attempt
    assert _paths(upstreams.a, "/hang/") == []


def test_every_target_down_is_503_without_connecting(gateway: httpx.Client) -> None:
    # both tried (GET is retried), both ejected
    assert _problem(gateway.get("/alldown/x"))[:2] == (502, "upstream_unavailable")
    response = gateway.get("/alldown/x")
    assert _problem(response) == (
        503,
        "upstream_unavailable",
        "Every upstream target of this route is failing; retry later.",
    )
    assert 1 <= int(response.headers["retry-after"]) <= 30


def test_route_connect_and_read_timeouts_apply(gateway: httpx.Client, upstreams: Upstreams) -> None:
    started = time.monotonic()
    assert _problem(gateway.get("/timed/x"))[:2] == (504, "upstream_timeout")
    assert time.monotonic() - started < 1.5  # the read timeout (0.2 s), not the answer (2 s)


def test_health_policy_from_settings(gateway: httpx.Client, upstreams: Upstreams) -> None:
    # health: {failures: 4, cooldown: 2}: round-robin tries the dead target every other
    # request (the GET retried on the live one); its 4th failure ejects it for 2 s.
    fresh_echo(upstreams.a)
    for _ in range(8):
        assert gateway.get("/policy/x").status_code == 200
    back = upstreams.revive(upstreams.dead["policy"])
    for _ in range(4):
        assert gateway.get("/policy/y").status_code == 200
    assert _paths(back, "/policy/") == []  # ejected: not tried though it is back
    time.sleep(2.3)  # the cool-down (2 s, not the default 5 s) is over: it is probed again
    for _ in range(4):
        assert gateway.get("/policy/z").status_code == 200
    assert _paths(back, "/policy/") != []
