"""End to end: routes reloaded in a running ``bastion serve`` without dropping connections.

The configuration file is changed while a slow request is in flight on a route the new
file removes; ``bastion routes reload`` (pid file + SIGHUP) swaps the routes: the new
route answers, the removed one is 404, the request in flight completes. A broken file
sent with a bare SIGHUP is refused and logged; the running routes keep working.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread, run_cli


@pytest.fixture
def echoes() -> Iterator[tuple[EchoThread, EchoThread]]:
    fast, slow = EchoThread(), EchoThread()
    slow.server.delay = 4.0
    try:
        yield fast, slow
    finally:
        fast.close()
        slow.close()


def config_text(tmp_path: Path, routes: dict[str, str]) -> str:
    lines = [f"storage: sqlite:///{tmp_path}/bastion.db", "routes:"]
    for name, url in routes.items():
        lines += [f"  - name: {name}", f"    match: {{path: /{name}}}", f"    upstream: {url}"]
        lines += ["    public: true"]
    return "\n".join(lines) + "\n"


def wait_for_status(client: httpx.Client, path: str, status: int) -> httpx.Response:
    deadline = time.monotonic() + 20
    while True:
        response = client.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_reload_swaps_routes_and_keeps_in_flight_requests(
    tmp_path: Path, echoes: tuple[EchoThread, EchoThread]
) -> None:
    fast, slow = echoes
    config = tmp_path / "bastion.yaml"
    config.write_text(config_text(tmp_path, {"keep": fast.server.url, "old": slow.server.url}))
    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        assert (tmp_path / ".bastion" / "bastion.pid").read_text().strip() == str(proc.proc.pid)  # type: ignore[union-attr]
        client = httpx.Client(base_url=proc.url, verify=False, timeout=30)
        assert client.get("/new/x").status_code == 404

        in_flight: list[httpx.Response] = []
        with httpx.Client(base_url=proc.url, verify=False, timeout=30) as other:
            thread = threading.Thread(target=lambda: in_flight.append(other.get("/old/slow")))
            thread.start()
            deadline = time.monotonic() + 10
            while not slow.server.received and time.monotonic() < deadline:
                time.sleep(0.05)  # the request reached the slow upstream: it is in flight
            assert len(slow.server.received) == 1

            config.write_text(
                config_text(tmp_path, {"keep": fast.server.url, "new": fast.server.url})
            )
            result = run_cli("routes", "reload", "-c", str(config), "--json", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            report = orjson.loads(result.stdout)
            assert report["routes"] == ["keep", "new"]
            assert report["signalled"] == proc.proc.pid  # type: ignore[union-attr]

            assert wait_for_status(client, "/new/x", 200).json()["path"] == "/new/x"
            removed = client.get("/old/x")
            assert removed.status_code == 404
            assert removed.json()["reason"] == "route_not_found"
            assert client.get("/keep/x").status_code == 200
            thread.join(30)
        assert [r.status_code for r in in_flight] == [200]
        assert in_flight[0].json()["path"] == "/old/slow"

        # A broken file: refused by the CLI before signalling …
        config.write_text(config_text(tmp_path, {"BAD NAME": fast.server.url}))
        refused = run_cli("routes", "reload", "-c", str(config), cwd=tmp_path)
        assert refused.returncode == 2
        assert "routes[0].name" in refused.stderr
        # … and by the server itself when signalled directly: the old routes stay.
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGHUP)
        time.sleep(1.0)  # let it read this file before the next one is written
        config.write_text("routes: [")  # not even YAML
        os.kill(proc.proc.pid, signal.SIGHUP)
        time.sleep(1.0)  # give the server time to (not) act on it
        assert client.get("/new/x").status_code == 200
        assert client.get("/keep/x").status_code == 200
        client.close()
    assert proc.stderr.count("reload refused, the current routes stay") == 2
    assert "routes reloaded: keep, new" in proc.stderr
    assert not (tmp_path / ".bastion" / "bastion.pid").exists()


def test_reload_without_a_running_server(tmp_path: Path) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text(f"storage: sqlite:///{tmp_path}/bastion.db\n")
    result = run_cli("routes", "reload", "-c", str(config), cwd=tmp_path)
    assert result.returncode != 0
    assert f"no pid file at .bastion/{'bastion.pid'}" in result.stderr
