"""End to end: adaptive load shedding in the native plane, one limit with Python's.

With ``ratelimit.shedding`` on, routes stay native (``bastion routes list``). In
front of a slow upstream, a route at its concurrency limit sheds the next
requests natively with Python's 503 ``overloaded`` (problem+json,
``Retry-After: 1``), before they reach the upstream; a key's first request (its
lookup answered) draws from the same limit and is shed alike. The slot is held
until the response body ends, then given back. Every shed request is one
``gateway.denied`` audit row (step ``proxy``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _support import BastionProcess, EchoThread
from _support.native import cli_json, migrated_config, plane
from bastion.storage import Database


def _config(tmp_path: Path, upstream: str) -> Path:
    config = migrated_config(
        tmp_path,
        "  - name: slow\n"
        "    match: {path: /slow}\n"
        f"    upstream: {upstream}\n"
        "    auth: [api_key]\n",
    )
    config.write_text(
        "ratelimit:\n"
        "  shedding: {enabled: true, initial_limit: 2, min_limit: 1, max_limit: 2,"
        " target_latency: 30s}\n" + config.read_text()
    )
    return config


def test_a_full_route_sheds_natively_and_python_shares_the_limit(
    tmp_path: Path, echo: EchoThread
) -> None:
    config = _config(tmp_path, echo.server.url)
    key = cli_json(config, "keys", "create", "busy")
    other = cli_json(config, "keys", "create", "newcomer")
    auth = {"Authorization": f"Bearer {key['key']}"}
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=30) as client,
    ):
        python = plane(client.get("/healthz"))  # not a gateway request: Python's plane
        warm = [client.get("/slow/warm", headers=auth) for _ in range(2)]
        assert [r.status_code for r in warm] == [200, 200]
        native = plane(warm[0])
        assert python != native == plane(warm[1])
        echo.server.delay = 2.0
        held: list[httpx.Response] = []

        def hold() -> None:
            with httpx.Client(base_url=proc.url, verify=False, timeout=30) as own:
                held.append(own.get("/slow/held", headers=auth))

        threads = [threading.Thread(target=hold) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while sum(r.path.startswith("/slow/held") for r in echo.server.received) < 2:
            assert time.monotonic() < deadline, "the two slow requests never arrived"
            time.sleep(0.02)
        shed = [client.get(f"/slow/shed{n}", headers=auth) for n in range(3)]
        # Another key's first request (a lookup): the same limit sheds it.
        deferred = client.get("/slow/deferred", headers={"Authorization": f"Bearer {other['key']}"})
        for thread in threads:
            thread.join(30)
        echo.server.delay = 0.0
        after = client.get("/slow/after", headers=auth)

    assert [r.status_code for r in held] == [200, 200]
    assert all(plane(r) == native for r in held)
    for response in shed:
        assert response.status_code == 503
        assert plane(response) == native, "shed natively"
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {
            "type": "urn:bastion:problem:overloaded",
            "title": "Service unavailable",
            "status": 503,
            "detail": "The upstream is overloaded; retry shortly.",
            "reason": "overloaded",
            "request_id": response.headers["x-request-id"],
        }
    # The new key's first request draws from the same limit: shed natively, alike.
    assert (deferred.status_code, plane(deferred)) == (503, native)
    assert deferred.headers["retry-after"] == "1"
    body = deferred.json()
    assert (body["reason"], body["detail"]) == (
        "overloaded",
        "The upstream is overloaded; retry shortly.",
    )
    # The slots came back once the bodies ended; no shed request reached the upstream.
    assert (after.status_code, plane(after)) == (200, native)
    paths = [r.path for r in echo.server.received]
    assert not any("shed" in p or "deferred" in p for p in paths), paths

    async def denied() -> list[Any]:
        db = await Database.connect(f"sqlite:///{tmp_path}/bastion.db")
        try:
            page = await db.audit.search(type="gateway.denied", limit=100)
            return list(page.items)
        finally:
            await db.close()

    rows = asyncio.run(denied())
    assert len(rows) == 4
    for row in rows:
        assert (row.reason, row.route, row.outcome) == ("overloaded", "slow", "failure")
        assert row.data["status"] == 503 and row.data["step"] == "proxy"
    assert sorted(row.key_id for row in rows) == sorted([key["id"]] * 3 + [other["id"]])
