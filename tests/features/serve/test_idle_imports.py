"""What an idle ``bastion serve`` has imported: optional heavy packages stay out (issue 14).

Idle RSS (≤ 100 MB) is measured by ``bench/server/idle_rss.py``, not here (bytes are
machine-dependent). This pins its cause instead: the packages a node needs only for
what it does not use (Alembic when the schema is current, redis-py and the
OpenTelemetry SDK it pulls in without ``shared: redis://``, asyncpg and PostgreSQL's
SQLAlchemy dialect on SQLite, SQLAlchemy's ORM (bastion uses Core through
``bastion.storage.sql.aio``), httpx without webhooks / trusted issuers /
introspection, Jinja2) are not imported once the
server is ready.

The server runs in a subprocess as ``bastion serve`` runs (the CLI, the real start-up),
with ``run_server``'s ready callback wrapped to write ``sys.modules`` and stop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _support import free_port

# Imported by an idle node only if it is configured to use them.
OPTIONAL = (
    "alembic",
    "mako",
    "pygments",
    "redis",
    "opentelemetry",
    "asyncpg",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "httpx",
    "httpcore",
    "jinja2",
)

_SERVE = """
import json, os, signal, sys

import bastion.http.server as server

serve = server.run_server


async def run_server(*args, on_ready=None, **kwargs):
    def ready(url):
        if on_ready is not None:
            on_ready(url)
        with open(os.environ["MODULES_OUT"], "w") as out:
            json.dump(sorted(sys.modules), out)
        os.kill(os.getpid(), signal.SIGTERM)

    await serve(*args, on_ready=ready, **kwargs)


server.run_server = run_server
from bastion.cli import main

sys.argv = ["bastion", "serve", "-c", sys.argv[1]]
main()
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env["MODULES_OUT"] = str(tmp_path / "modules.json")
    return env


def _config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"""
data_dir: {tmp_path / "data"}
listen: {{host: 127.0.0.1, port: {free_port()}}}
tls: off
trusted_proxies: [127.0.0.1]
logging: {{level: warning}}
{extra}
routes:
  - name: public
    match: {{path: /public}}
    upstream: http://127.0.0.1:9
    public: true
  - name: key
    match: {{path: /key}}
    upstream: http://127.0.0.1:9
    auth: [api_key, jwt]
    limits: [{{per: key, rate: 10/second}}]
"""
    )
    return config


def _serve_modules(tmp_path: Path, config: Path) -> set[str]:
    env = _env(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _SERVE, str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(Path(env["MODULES_OUT"]).read_text())
    return set(modules)


def _loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_idle_serve_imports_no_optional_heavy_package(tmp_path: Path) -> None:
    config = _config(tmp_path)
    # The schema exists (as after any first start); the start under test finds it current.
    subprocess.run(
        [sys.executable, "-m", "bastion", "migrate", "-c", str(config)],
        env=_env(tmp_path),
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    modules = _serve_modules(tmp_path, config)
    # It did start: the serving stack is there (the list is not empty or cut short).
    for needed in ("bastion.runtime", "bastion._native", "sqlalchemy", "uvicorn"):
        assert needed in modules, needed
    assert {p: _loaded(modules, p) for p in OPTIONAL if _loaded(modules, p)} == {}


def test_a_first_start_migrates_with_alembic(tmp_path: Path) -> None:
    # The control of the test above: Alembic is imported when there is work for it.
    modules = _serve_modules(tmp_path, _config(tmp_path))
    assert "alembic" in modules
    assert "redis" not in modules


def test_redis_is_imported_when_shared_state_is_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    config = _config(tmp_path, f"shared: {{url: '{redis_url}', key_prefix: '{redis_prefix}'}}")
    modules = _serve_modules(tmp_path, config)
    assert "redis" in modules


def test_the_cli_does_not_load_the_extension_before_serve_configures_it() -> None:
    # serve sets MIMALLOC_ALLOW_THP before the settings load the extension: mimalloc
    # reads it once, at load. Importing the command tree must not load it first.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, bastion.cli.app; print('bastion._native' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
