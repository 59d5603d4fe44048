"""Helpers of the native-front features: the CLI as JSON, and which plane answered."""

from __future__ import annotations

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
