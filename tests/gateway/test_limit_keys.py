"""The ``limit`` step with per-API-key limits, overrides, node shares and outage bookkeeping.

Black-box, against real ``bastion serve`` processes: keys with limits of their own are made
with ``bastion keys create --rate-limit``, overridden with ``bastion limits set`` / ``clear``
while the server runs; requests name their client address through a trusted proxy
(127.0.0.2). The outage cases run on Redis behind a TCP proxy the tests cut: one server with
the default ``ratelimit.key_limits_fail: closed``, one with ``open`` (where two more nodes
beat the heartbeat, so this node's share of a fail-open limit is a third).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from _support import EchoThread, TCPProxy
from _support.gateway_edge import PROXY, bearer, forwarded, problem, serve_on_redis, served_with
from _support.gateway_server import GatewayServer, audit_rows, fresh_echo
from _support.waiting import wait_until
from bastion.demo.echo import EchoServer
from bastion.ratelimit.nodes import NodeCount
from bastion.storage.shared import RedisSharedState


def _routes(routes: dict[str, str], upstream: str = "{echo}") -> str:
    return "".join(
        f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {upstream}\n"
        "    auth: [api_key]\n" + (f"    limits: [{limits}]\n" if limits else "")
        for name, limits in routes.items()
    )


ROUTES = {
    "keyed": "",
    "mixed": "{per: ip, rate: 100/minute}",
    "orders": "",
    "billing": "",
    "override": "",
}
#: Every running node applies an override within a second (``bastion limits set``).
APPLIED = 1.5
SETTINGS = "tls: off\ntrusted_proxies: [127.0.0.2]\n"


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


served = served_with(_routes(ROUTES), SETTINGS)


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    return fresh_echo(echo_upstream)


def key(server: GatewayServer, name: str, *limits: str) -> tuple[str, str]:
    """A new key with these limits of its own: (the key, its id)."""
    args = [arg for limit in limits for arg in ("--rate-limit", limit)]
    made = server.cli("keys", "create", name, *args)
    return str(made["key"]), str(made["id"])


def get(server: GatewayServer, path: str, secret: str) -> httpx.Response:
    with server.client(source=PROXY) as client:
        return client.get(path, headers={**bearer(secret), **forwarded("203.0.113.7")})


def test_identity_of_a_key_carries_its_limits(served: GatewayServer, echo: EchoServer) -> None:
    limited, _ = key(served, "carries", "10/second")
    plain, _ = key(served, "carries-none")
    response = get(served, "/keyed", limited)
    assert response.headers["ratelimit-policy"] == '"10/second";q=10;w=1'
    assert "ratelimit" not in get(served, "/keyed", plain).headers


def test_key_limits_apply_without_route_limits(served: GatewayServer, echo: EchoServer) -> None:
    k1, _ = key(served, "k1", "3/minute")
    free, _ = key(served, "free")
    for remaining in (2, 1, 0):
        response = get(served, "/keyed", k1)
        assert response.status_code == 200
        assert response.headers["ratelimit"] == (
            f'"3/minute";r={remaining};t={60 - remaining * 20}'
        )
    refused = get(served, "/keyed", k1)
    assert problem(refused)[:2] == (429, "rate_limited")
    assert refused.headers["retry-after"] == "20"
    assert len(echo.received) == 3
    # Another key, no limits of its own: unlimited here.
    for _ in range(10):
        assert get(served, "/keyed", free).status_code == 200


def test_key_and_route_limits_in_one_decision(served: GatewayServer, echo: EchoServer) -> None:
    k2, _ = key(served, "k2", "2/second", "5/minute")
    response = get(served, "/mixed", k2)
    assert response.headers["ratelimit-policy"] == (
        '"100/minute";q=100;w=60, "2/second";q=2;w=1, "5/minute";q=5;w=60'
    )
    assert get(served, "/mixed", k2).status_code == 200
    refused = get(served, "/mixed", k2)  # 2/second refuses ...
    assert problem(refused)[:2] == (429, "rate_limited")
    # ... and consumed nothing from the ip limit nor the 5/minute one.
    assert refused.headers["ratelimit"] == (
        '"100/minute";r=98;t=2, "2/second";r=0;t=1, "5/minute";r=3;t=24'
    )


def test_key_limits_are_shared_across_routes(served: GatewayServer, echo: EchoServer) -> None:
    k1, _ = key(served, "shared-k1", "3/minute")
    statuses = [get(served, path, k1).status_code for path in ("/orders", "/billing") * 2]
    assert statuses == [200, 200, 200, 429]


def applied(server: GatewayServer, secret: str, ratelimit: str) -> httpx.Response:
    """The first answer on /override whose ``RateLimit`` is ``ratelimit``: an override is
    applied by every running node within a second (``APPLIED``), awaited by its effect."""

    def answer() -> httpx.Response | None:
        response = get(server, "/override", secret)
        return response if response.headers.get("ratelimit") == ratelimit else None

    return wait_until(answer, f"an answer with RateLimit {ratelimit}", timeout=4 * APPLIED)


def test_override_replaces_the_keys_limits_at_once(served: GatewayServer, echo: EchoServer) -> None:
    k1, k1_id = key(served, "override-k1", "3/minute")
    free, free_id = key(served, "override-free")
    assert get(served, "/override", free).status_code == 200  # both looked up
    served.cli("limits", "set", k1_id, "--rate", "1/minute")
    # Slept, not polled: a request before the override applies would spend k1's own
    # 3/minute bucket, which the last step below expects fresh.
    time.sleep(APPLIED)
    assert get(served, "/override", k1).headers["ratelimit"] == '"1/minute";r=0;t=60'
    assert problem(get(served, "/override", k1))[:2] == (429, "rate_limited")
    # An override can also give limits to a key that has none. Awaited by its first answer
    # from here on (a bucket names its limit: the first request under a new limit is the
    # first of a fresh bucket, and requests before it spend no bucket checked later).
    served.cli("limits", "set", free_id, "--rate", "1/minute")
    assert applied(served, free, '"1/minute";r=0;t=60').status_code == 200
    assert problem(get(served, "/override", free))[:2] == (429, "rate_limited")
    # Cleared: the key's own 3/minute (a fresh bucket: it names the limit).
    served.cli("limits", "clear", k1_id)
    applied(served, k1, '"3/minute";r=2;t=20')


# -- Redis down ----------------------------------------------------------------------------

REDIS_ROUTES = {"keyed": "", "share": "{per: ip, rate: 6/minute, fail: open}"}
REDIS_ROUTES["outage"] = "{per: ip, rate: 100/minute, fail: open}"


def _on_redis(key_limits_fail: str) -> object:
    @pytest.fixture(scope="module")
    def fixture(
        tmp_path_factory: pytest.TempPathFactory, echo_upstream: EchoThread, redis_url: str
    ) -> Iterator[tuple[GatewayServer, TCPProxy, str, str]]:
        routes = _routes(REDIS_ROUTES, echo_upstream.server.url)
        settings = SETTINGS + f"ratelimit: {{key_limits_fail: {key_limits_fail}}}\n"
        directory = tmp_path_factory.mktemp("redis-keys")
        with serve_on_redis(directory, routes, settings, redis_url) as (server, proxy, prefix):
            made = server.cli("keys", "create", "k1", "--rate-limit", "3/minute")
            yield server, proxy, prefix, made["key"]

    return fixture


closed_redis = _on_redis("closed")
open_redis = _on_redis("open")


def test_key_limits_fail_closed_by_default_and_open_on_request(
    closed_redis: tuple[GatewayServer, TCPProxy, str, str],
    open_redis: tuple[GatewayServer, TCPProxy, str, str],
    echo: EchoServer,
) -> None:
    for server, proxy, _, k1 in (closed_redis, open_redis):
        assert get(server, "/keyed", k1).status_code == 200  # looked up, Redis up
        proxy.cut()
    try:
        closed, _, _, k1_closed = closed_redis
        refused = get(closed, "/keyed", k1_closed)
        assert problem(refused)[:2] == (503, "rate_limiter_unavailable")
        opened, _, _, k1_open = open_redis
        assert get(opened, "/keyed", k1_open).status_code == 200
    finally:
        closed_redis[1].restore()
        open_redis[1].restore()


def test_fail_open_share_is_the_limit_divided_by_live_nodes(
    open_redis: tuple[GatewayServer, TCPProxy, str, str], redis_url: str, echo: EchoServer
) -> None:
    server, proxy, prefix, _ = open_redis
    free = server.cli("keys", "create", "share-free")["key"]
    wait_until(lambda: get(server, "/keyed", free).status_code == 200)  # Redis up, key looked up

    async def two_more_nodes() -> None:
        """Nodes n2 and n3 beat the heartbeat while this node beats its own (every 5/3 s)."""
        shared = await RedisSharedState.connect(redis_url, key_prefix=prefix)
        try:
            others = [NodeCount(shared, "n2"), NodeCount(shared, "n3")]
            for _ in range(10):
                for node in others:
                    await node.beat()
                await asyncio.sleep(0.3)
        finally:
            await shared.close()

    asyncio.run(two_more_nodes())
    proxy.cut()
    try:
        admitted = sum(get(server, "/share", free).status_code == 200 for _ in range(10))
    finally:
        proxy.restore()
    assert admitted == 2  # 6/minute shared by 3 nodes


def test_outage_and_recovery_are_audited_once_each(
    open_redis: tuple[GatewayServer, TCPProxy, str, str], echo: EchoServer
) -> None:
    server, proxy, _, _ = open_redis
    directory = server.config.parent
    free = server.cli("keys", "create", "outage-free")["key"]
    wait_until(lambda: get(server, "/outage", free).status_code == 200)  # Redis up (again)
    downs = len(audit_rows(directory, "ratelimit.backend_down"))
    ups = len(audit_rows(directory, "ratelimit.backend_up"))
    proxy.cut()
    try:
        for _ in range(5):
            assert get(server, "/outage", free).status_code == 200
    finally:
        proxy.restore()
    wait_until(lambda: len(audit_rows(directory, "ratelimit.backend_down")) == downs + 1)
    (down,) = sorted(audit_rows(directory, "ratelimit.backend_down").values(), key=lambda r: r.seq)[
        -1:
    ]
    assert (down.outcome, down.reason) == ("failure", "shared_state_unavailable")
    # The native limiter's error (Python's own client said "Redis at … is unreachable").
    assert down.data["error"].startswith(f"redis: connect 127.0.0.1:{proxy.port}: ")
    wait_until(lambda: get(server, "/outage", free).status_code == 200)
    for _ in range(3):
        assert get(server, "/outage", free).status_code == 200
    wait_until(lambda: len(audit_rows(directory, "ratelimit.backend_up")) == ups + 1)
    (up,) = sorted(audit_rows(directory, "ratelimit.backend_up").values(), key=lambda r: r.seq)[-1:]
    assert up.data["down_seconds"] >= 0
    time.sleep(0.5)
    assert len(audit_rows(directory, "ratelimit.backend_down")) == downs + 1  # once each
    assert len(audit_rows(directory, "ratelimit.backend_up")) == ups + 1
