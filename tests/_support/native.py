"""Helpers of the native-front features: the CLI as JSON, and which plane answered."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from _support import run_cli


def cli_json(config: Path, *args: str) -> Any:
    """``bastion ARGS -c CONFIG --json`` (it must succeed), parsed."""
    result = run_cli(*args, "-c", str(config), "--json", cwd=config.parent)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout) if result.stdout.strip() else {}


def plane(response: httpx.Response) -> str:
    """The request id's prefix: one per plane of a process (Python's, the native front's)."""
    return response.headers["x-request-id"].rsplit("-", 1)[0]


def migrated_config(tmp_path: Path, routes: str) -> Path:
    """``tmp_path/bastion.yaml`` on SQLite with ``routes`` (YAML list items), migrated."""
    config = tmp_path / "bastion.yaml"
    config.write_text(f"storage: sqlite:///{tmp_path}/bastion.db\nroutes:\n{routes}")
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    return config


_FEED = re.compile(rb"^bastion_change_feed_changes_total(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def feed_changes(base_url: str, token: str | None = None) -> float:
    """``bastion_change_feed_changes_total`` of the server at ``base_url`` (its /metrics)."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    scrape = httpx.get(f"{base_url}/metrics", headers=auth, verify=False, timeout=10)
    assert scrape.status_code == 200
    return sum(float(v) for v in _FEED.findall(scrape.content))


def until_feed_past(
    base_url: str, before: float, token: str | None = None, within: float = 5.0
) -> None:
    """Wait until the server has followed a change made elsewhere (its feed count passed
    ``before``): a change it delivers later would drop what a request pushed meanwhile."""
    deadline = time.monotonic() + within
    while feed_changes(base_url, token) <= before:
        assert time.monotonic() < deadline, "the change feed did not deliver the change"
        time.sleep(0.05)


_LOOKUPS = re.compile(
    rb'^bastion_native_lookups_total\{kind="([a-z_]+)",outcome="([a-z]+)"\} ([0-9.e+]+)$', re.M
)


def native_lookups(client: httpx.Client) -> dict[tuple[str, str], int]:
    """``bastion_native_lookups_total`` by ``(kind, outcome)``, from ``client``'s /metrics."""
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    return {
        (kind.decode(), outcome.decode()): int(float(n))
        for kind, outcome, n in _LOOKUPS.findall(scrape.content)
    }


def same_answer(python: httpx.Response, native: httpx.Response, status: int | None = None) -> None:
    """A native answer and its Python twin are byte-identical but for the request id (in the
    body and the header) and the date; with ``status``, both have it."""
    assert python.status_code == native.status_code
    if status is not None:
        assert native.status_code == status
    rid_p, rid_n = python.headers["x-request-id"], native.headers["x-request-id"]
    assert python.content.replace(rid_p.encode(), b"RID") == native.content.replace(
        rid_n.encode(), b"RID"
    )

    def head(response: httpx.Response) -> list[tuple[bytes, bytes]]:
        # The request ids' lengths differ between the planes' counters: the length is
        # compared with each body's own id stood for by the same placeholder.
        rid = response.headers["x-request-id"].encode()
        length = str(len(response.content.replace(rid, b"RID"))).encode()
        return [
            (name.lower(), length if name.lower() == b"content-length" else value)
            for name, value in response.headers.raw
            if name.lower() not in (b"x-request-id", b"date")
        ]

    assert head(python) == head(native)
