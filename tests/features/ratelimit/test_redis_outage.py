"""Issue 6 acceptance: Redis killed under load → each limit's fail mode, no 500s, recovery.

Two ``bastion serve`` nodes on PostgreSQL and a Redis this test starts (and kills, and
restarts on the same port). Routes:

- ``strict``: a per-IP limit that fails *closed* → 503 ``rate_limiter_unavailable``;
- ``lenient``: a route-wide 10/minute that fails *open* → each node admits its share,
  10 ÷ 2 known nodes = 5 (the nodes counted each other through the heartbeat first).

Each node logs (and audits) the outage once and the recovery once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from _support import EchoThread, free_port
from features.ratelimit.cluster import Cluster, migrate_postgres, redis_server, write_config

ROUTES = """  - name: strict
    match: {{path: /api/strict}}
    upstream: {upstream}
    public: true
    limits: [{{per: ip, rate: 1000/minute, fail: closed}}]
  - name: lenient
    match: {{path: /api/lenient}}
    upstream: {upstream}
    public: true
    limits: [{{per: route, rate: 10/minute, fail: open}}]
"""


def statuses(client: httpx.Client, url: str, n: int) -> Counter[tuple[int, str]]:
    seen: Counter[tuple[int, str]] = Counter()
    for _ in range(n):
        response = client.get(url)
        reason = "" if response.status_code == 200 else response.json()["reason"]
        seen[(response.status_code, reason)] += 1
    return seen


@pytest.mark.timeout(600)
def test_redis_outage_and_recovery(tmp_path: Path, echo: EchoThread, postgres_url: str) -> None:
    port = free_port()
    redis = redis_server(port)
    try:
        migrate_postgres(postgres_url)
        config = write_config(
            tmp_path / "bastion.yaml",
            storage=postgres_url,
            shared=f"redis://127.0.0.1:{port}/0",
            prefix="outage:",
            upstream=echo.server.url,
            routes=ROUTES.format(upstream=echo.server.url),
            extra="ratelimit: {node_heartbeat: 1}\n",
        )
        with Cluster(config, 2, cwd=tmp_path) as cluster, httpx.Client(timeout=30) as client:
            a, b = cluster.urls
            assert statuses(client, a + "/api/strict", 2) == {(200, ""): 2}
            time.sleep(3)  # a few heartbeats: each node knows there are 2

            redis.kill()
            redis.wait()
            for url in (a, b):
                strict = client.get(url + "/api/strict")
                assert strict.status_code == 503
                assert strict.headers["retry-after"] == "1"
                assert strict.json()["reason"] == "rate_limiter_unavailable"
                # Fail open: this node's share of 10/minute over 2 nodes, then 429.
                seen = statuses(client, url + "/api/lenient", 8)
                print(f"\n{url} lenient during the outage: {dict(seen)}")
                assert seen == {(200, ""): 5, (429, "rate_limited"): 3}

            redis = redis_server(port)  # back, empty
            deadline = time.monotonic() + 30
            recovered = Counter[tuple[int, str]]()
            while time.monotonic() < deadline:
                recovered = statuses(client, a + "/api/strict", 1) + statuses(
                    client, b + "/api/strict", 1
                )
                if recovered == {(200, ""): 2}:
                    break
                time.sleep(0.5)
            assert recovered == {(200, ""): 2}
            # Shared again: 10/minute across both nodes together.
            together = statuses(client, a + "/api/lenient", 6) + statuses(
                client, b + "/api/lenient", 6
            )
            assert together == {(200, ""): 10, (429, "rate_limited"): 2}
        log = cluster.stderr()
        assert log.count("rate limiter backend down, limits fail closed (503)") == 2
        assert log.count("rate limiter backend up again after") == 2
        at = log.find("Traceback")
        assert at < 0, log[max(0, at - 1500) : at + 3000]
    finally:
        redis.kill()
        redis.wait()
