"""Helpers for the rate-limit acceptance tests: N bastion processes, one config, a load generator.

Also used by ``bench/ratelimit/run.py`` (which puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from _support import BastionProcess, free_port
from bastion.apikeys import ApiKeyService, ApiKeySpec
from bastion.settings import load_settings
from bastion.storage import Database, migrate
from bastion.storage.shared import open_shared_state


def write_config(
    path: Path,
    *,
    storage: str,
    shared: str,
    prefix: str,
    upstream: str,
    routes: str = "",
    extra: str = "",
) -> Path:
    """A bastion config with the ``limited`` route (API key, no route limits) plus ``routes``."""
    path.write_text(
        f"storage: '{storage}'\n"
        f"shared: {{url: '{shared}', key_prefix: '{prefix}'}}\n"
        "tls: {mode: 'off'}\n"
        "trusted_proxies: ['192.0.2.1']\n"
        "logging: {level: warning}\n"
        f"{extra}"
        "routes:\n"
        "  - name: limited\n"
        "    match: {path: /api/limited}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n"
        f"{routes}",
        encoding="utf-8",
    )
    return path


def create_key(config: Path, rate: str, burst: int | None = None) -> tuple[str, str]:
    """Create an API key with one per-key limit in the configured stores; ``(id, key)``."""
    settings = load_settings(config, {})

    async def main() -> tuple[str, str]:
        if settings.storage_url.startswith("postgresql"):
            await migrate(settings.storage_url)
        db = await Database.connect(settings.storage_url)
        shared = await open_shared_state(settings.shared.url, key_prefix=settings.shared.key_prefix)
        try:
            limit: dict[str, Any] = {"rate": rate}
            if burst is not None:
                limit["burst"] = burst
            record, key = await ApiKeyService(db, settings, shared).create(
                ApiKeySpec(name="load", rate_limits=(limit,))
            )
            return record.id, key
        finally:
            await shared.close()
            await db.close()

    return asyncio.run(main())


def migrate_postgres(url: str) -> None:
    asyncio.run(migrate(url))


class Cluster:
    """``n`` ``bastion serve`` processes on one config (started in parallel)."""

    def __init__(self, config: Path, n: int, *, cwd: Path) -> None:
        self.nodes = [
            BastionProcess(
                "-c", str(config), cwd=cwd, port=free_port(), env={"PYTHONWARNINGS": "ignore"}
            )
            for _ in range(n)
        ]

    def __enter__(self) -> Cluster:
        started: list[BastionProcess] = []
        try:
            for node in self.nodes:
                node.start(timeout=60)
                started.append(node)
        except BaseException:
            for node in started:
                node.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.stop()

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def stderr(self) -> str:
        return "\n".join(node.stderr for node in self.nodes)


@dataclass
class LoadResult:
    """What a load run saw: status counts, duration and the problem reasons."""

    statuses: Counter[int] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    first: float = 0.0
    last: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    @property
    def admitted(self) -> int:
        return self.statuses[200]

    @property
    def elapsed(self) -> float:
        return self.last - self.first


async def _one(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], result: LoadResult
) -> None:
    started = time.monotonic()
    try:
        response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        result.statuses[-1] += 1
        result.reasons[type(exc).__name__] += 1
        return
    result.latencies.append(time.monotonic() - started)
    result.statuses[response.status_code] += 1
    if response.status_code != 200:
        try:
            result.reasons[str(response.json().get("reason"))] += 1
        except ValueError:
            result.reasons["not-json"] += 1


async def burst(urls: Sequence[str], path: str, key: str, count: int) -> LoadResult:
    """``count`` simultaneous requests spread round-robin over ``urls``."""
    result = LoadResult()
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # Open the connections first, so the requests themselves arrive together.
        result.first = time.monotonic()
        await asyncio.gather(
            *(_one(client, urls[i % len(urls)] + path, headers, result) for i in range(count))
        )
        result.last = time.monotonic()
    return result


async def steady(
    urls: Sequence[str], path: str, key: str, *, rate: float, seconds: float
) -> LoadResult:
    """Open-loop load: requests at ``rate`` per second for ``seconds``, round-robin over ``urls``.

    Each request is started at its scheduled instant whether or not earlier ones have
    answered (a closed loop would slow down exactly when the server does).
    """
    result = LoadResult()
    headers = {"Authorization": f"Bearer {key}"}
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        tasks = []
        start = time.monotonic()
        result.first = start
        for i in range(total):
            at = start + i / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(_one(client, urls[i % len(urls)] + path, headers, result))
            )
        result.last = start + (total - 1) / rate
        await asyncio.gather(*tasks)
    return result


async def saturate(
    urls: Sequence[str], path: str, key: str, *, workers: int, seconds: float
) -> LoadResult:
    """Closed-loop load: ``workers`` requests always in flight, round-robin, for ``seconds``.

    Keeps every node continuously busy at whatever rate the machine sustains (an open
    loop faster than the servers only builds a queue in the client).
    """
    result = LoadResult()
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        result.first = time.monotonic()
        deadline = result.first + seconds

        async def worker(index: int) -> None:
            n = index
            while time.monotonic() < deadline:
                await _one(client, urls[n % len(urls)] + path, headers, result)
                n += workers

        await asyncio.gather(*(worker(i) for i in range(workers)))
        result.last = time.monotonic()
    return result


def redis_server(port: int) -> subprocess.Popen[bytes]:
    """A throw-away ``redis-server`` on ``port`` (no persistence); wait until it answers."""
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"redis-server did not start on port {port}")
