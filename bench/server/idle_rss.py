"""Idle resident memory of ``bastion serve`` (issue 14: ≤ 100 MB), with a breakdown.

Usage (from the repository root)::

    .venv/bin/python bench/server/idle_rss.py [--threads 1] [--runs 3] [--breakdown]

Starts ``bastion serve`` exactly as ``bench/gateway/run.py`` does (its config: three
gateway routes, TLS off, the default engine, SQLite; ``bastion migrate``, one API key
and one client created first), waits until it listens, and prints ``VmRSS``:

- *ready*: right after the port answers, before any request;
- *bench*: after one ``client_credentials`` token request and 2 s of rest — the number
  ``bench/gateway/run.py`` reports as "idle RSS";
- *used*: after one request on each route (public, API key, JWT) and 2 s of rest.

``--threads N`` sets ``server.threads`` (the native front's runtimes; 0 = one per core),
e.g. ``--threads 1``, ``--threads 2`` and ``--threads 0`` to see what each runtime costs.
``--breakdown`` adds ``/proc/PID/smaps_rollup`` (anonymous vs file-backed), the biggest
mappings, and what importing each heavy top-level package costs on its own (a fresh
interpreter per package, RSS after minus before).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "gateway"))

# The gateway bench's helpers: the same config, start-up and measure.
from run import (  # noqa: E402
    bastion_config,
    bastion_env,
    free_port,
    rss_mib,
    start_bastion,
    wait_port,
)

PYTHON = sys.executable
BASTION = [PYTHON, "-m", "bastion"]

# Top-level packages whose import cost the breakdown measures one by one.
PACKAGES = (
    "bastion.cli.app",
    "bastion.runtime",
    "bastion.http.endpoints",
    "sqlalchemy",
    "sqlalchemy.ext.asyncio",
    "alembic",
    "pydantic",
    "cryptography.hazmat.primitives.asymmetric.ec",
    "joserfc",
    "jinja2",
    "httpx",
    "uvicorn",
    "granian",
    "redis.asyncio",
    "asyncpg",
    "prometheus_client",
    "rich.console",
    "typer",
    "argon2",
    "starlette.applications",
    "yaml",
    "orjson",
)


def smaps(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in KiB, by field."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0])
    return out


def mappings(pid: int, limit: int = 12) -> list[tuple[int, str]]:
    """The biggest contributors to RSS by mapped file (or ``[anon]``/``[heap]``), in KiB."""
    sizes: dict[str, int] = {}
    name = "?"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and ":" not in head[0]:
            name = head[5] if len(head) > 5 else "[anon]"
            name = name.rsplit("/", 1)[-1] if name.startswith("/") else name
        elif head and head[0] == "Rss:":
            sizes[name] = sizes.get(name, 0) + int(head[1])
    return sorted(((kib, n) for n, kib in sizes.items()), reverse=True)[:limit]


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def import_cost(module: str) -> float:
    """RSS (MiB) that importing ``module`` adds to a bare interpreter."""
    code = (
        "import sys\n"
        "def rss():\n"
        "    for l in open('/proc/self/status'):\n"
        "        if l.startswith('VmRSS:'): return int(l.split()[1])\n"
        "a = rss()\n"
        f"import {module}\n"
        "print((rss() - a) / 1024)\n"
    )
    out = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, check=True, env=bastion_env()
    )
    return float(out.stdout.strip())


def one_run(args: argparse.Namespace, work: Path) -> dict[str, float]:
    import httpx

    port, upstream = free_port(), free_port()
    config = bastion_config(work, port, f"http://127.0.0.1:{upstream}", "native", threads=1)
    if args.threads != 1:
        text = config.read_text().replace("threads: 1}", f"threads: {args.threads}}}")
        config.write_text(text)
    procs: list[subprocess.Popen[bytes]] = []
    # start_bastion: migrate, key, client, serve, wait for the port, one token request.
    # The "ready" number is taken by a second server on the same data (no token request).
    try:
        env = bastion_env()
        subprocess.run(
            [*BASTION, "migrate", "-c", str(config)], check=True, capture_output=True, env=env
        )
        server = subprocess.Popen(
            [*BASTION, "serve", "-c", str(config)],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(server)
        wait_port(port)
        time.sleep(2)
        ready = rss_mib(server.pid)
        ready_smaps = smaps(server.pid)
        server.terminate()
        server.wait(30)
        procs.clear()

        server, key, jwt = start_bastion(config, port, procs)
        time.sleep(2)
        bench = rss_mib(server.pid)
        result = {"ready": ready, "bench": bench, "threads": float(threads(server.pid))}
        result["anon"] = ready_smaps.get("Anonymous", 0) / 1024
        result["file"] = (ready_smaps.get("Rss", 0) - ready_smaps.get("Anonymous", 0)) / 1024
        base = f"http://127.0.0.1:{port}"
        for path, headers in (
            ("/public", {}),
            ("/key", {"Authorization": f"Bearer {key}"}),
            ("/jwt", {"Authorization": f"Bearer {jwt}"}),
        ):
            # The upstream does not listen: 502 after the whole pipeline ran.
            httpx.get(base + path, headers=headers, timeout=10)
        time.sleep(2)
        result["used"] = rss_mib(server.pid)
        if args.breakdown:
            print(f"  smaps_rollup (ready, KiB): {ready_smaps}")
            print("  biggest mappings now (KiB):")
            for kib, name in mappings(server.pid):
                print(f"    {kib:>8}  {name}")
        return result
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="server.threads (0: per core)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bastion-bench-rss-") as work:
            row = one_run(args, Path(work))
        rows.append(row)
        print(
            f"run {i + 1}: ready {row['ready']:.1f} MiB (anon {row['anon']:.1f}, "
            f"file {row['file']:.1f}), bench {row['bench']:.1f} MiB, "
            f"used {row['used']:.1f} MiB, {row['threads']:.0f} threads",
            flush=True,
        )
    for column in ("ready", "bench", "used"):
        median = statistics.median(r[column] for r in rows)
        print(f"median {column}: {median:.1f} MiB ({median * 1.048576:.1f} MB)")
    if args.breakdown:
        print("import cost on a bare interpreter (MiB, each alone; they overlap):")
        costs = sorted(((import_cost(m), m) for m in PACKAGES), reverse=True)
        for mib, module in costs:
            print(f"  {mib:6.1f}  {module}")


if __name__ == "__main__":
    main()
