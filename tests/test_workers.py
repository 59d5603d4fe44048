"""The parallel suite's workers never share a port, a Redis database or a PostgreSQL database.

See ``tests/_support/workers.py``: ``make test`` runs the suite in pytest-xdist workers.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from _support import free_port
from _support.workers import PORTS, WORKER, port_range, worker_redis_url


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 16])
def test_each_worker_has_ports_of_its_own(count: int) -> None:
    ranges = [port_range(f"gw{n}", count) for n in range(count)]
    taken = [port for r in ranges for port in r]
    assert len(taken) == len(set(taken))  # no port in two workers' ranges
    assert all(len(r) >= 500 for r in ranges)
    assert set(taken) <= set(PORTS)
    assert port_range("main", count) == PORTS


def test_worker_ports_are_below_the_ephemeral_range() -> None:
    """bind(0) and outgoing connections take ports from the ephemeral range: never ours."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not path.exists():
        pytest.skip("not Linux: no ip_local_port_range")
    low, high = (int(n) for n in path.read_text().split())
    assert PORTS.stop <= low or PORTS.start > high


def test_free_port_is_this_workers_and_turns() -> None:
    ports = [free_port() for _ in range(5)]
    assert all(port in port_range() for port in ports)
    assert len(set(ports)) == 5


def test_each_worker_has_a_redis_database_of_its_own() -> None:
    url = "redis://user:secret@cache:6380/0?socket_timeout=1"
    assert worker_redis_url(url, "main") == url
    assert worker_redis_url(url, "gw0") == "redis://user:secret@cache:6380/1?socket_timeout=1"
    numbers = [worker_redis_url("redis://cache", f"gw{n}").rsplit("/", 1)[1] for n in range(15)]
    assert numbers == [str(n) for n in range(1, 16)]  # 0 is a serial run's


@pytest.mark.redis
def test_the_redis_url_fixture_is_this_workers(redis_url: str, redis_prefix: str) -> None:
    configured = os.environ["BASTION_TEST_REDIS_URL"]
    assert redis_url == worker_redis_url(configured)
    assert redis_prefix.startswith(f"bastion-test:{WORKER}:")


@pytest.mark.postgres
def test_postgres_databases_are_named_after_the_worker(postgres_url: str) -> None:
    assert urlsplit(postgres_url).path.startswith(f"/bastion_t_{WORKER}_")
