"""Benchmark the HTTP server engines side by side and write ``RESULTS.md``.

Usage (from the repository root)::

    .venv/bin/python bench/server/run.py [--duration 10] [--warmup 3] [--connections 50]

Each case starts one server process pinned to core 0 (``taskset -c 0``) and
drives it with ``wrk`` pinned to core 1 (one thread, keep-alive connections),
after a warm-up run. Cases: a hello-world raw ASGI app under uvicorn
(uvloop + httptools) and granian (embedded in a uvloop loop, as bastion runs
it; and granian's own single-worker runner for reference), over plain HTTP and
TLS; then bastion's middleware stack (``create_app`` around the same hello
app as gateway) under each engine, to show what the stack costs.

Needs ``wrk`` (Debian/Ubuntu: ``sudo apt-get install -y wrk``) and ``taskset``
(util-linux).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Started by path, so bench/ (the home of benchlib) is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import free_port, need, run_wrk, stop, write_report, wrk_ms

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PYTHON = sys.executable

CASES: list[tuple[str, str, bool]] = [
    # (engine, stack, tls)
    ("uvicorn", "raw", False),
    ("granian", "raw", False),
    ("granian-cli", "raw", False),
    ("uvicorn", "raw", True),
    ("granian", "raw", True),
    ("granian-cli", "raw", True),
    ("uvicorn", "bastion", False),
    ("granian", "bastion", False),
    ("uvicorn", "bastion", True),
    ("granian", "bastion", True),
]


@dataclass
class Result:
    engine: str
    stack: str
    tls: bool
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rps_runs: tuple[float, ...] = ()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start listening")


def _ms(text: str) -> float:
    ms = wrk_ms(text)
    if ms is None:
        raise ValueError(f"unparseable latency {text!r}")
    return ms


def _wrk(url: str, duration: int, connections: int) -> tuple[float, float, float, int]:
    run = run_wrk(url, duration, connections)
    return run.rps, run.p50, run.p99, run.errors


def _case(
    engine: str, stack: str, tls: bool, cert: tuple[Path, Path], args: argparse.Namespace
) -> Result:
    port = free_port()
    cmd = ["taskset", "-c", "0", PYTHON, str(HERE / "serve.py"), engine, stack, str(port)]
    if tls:
        cmd += [str(cert[0]), str(cert[1])]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port, proc)
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/hello"
        _wrk(url, args.warmup, args.connections)
        rps, p50, p99, errors = _wrk(url, args.duration, args.connections)
    finally:
        stop(proc, 15)
    return Result(engine, stack, tls, rps, p50, p99, errors)


def _stack_overhead(calls: int = 100_000, repeats: int = 5) -> tuple[float, float]:
    """In-process µs per request of the hello app alone and inside bastion's stack (best of N).

    No sockets and no server: this isolates what the middleware and dispatch
    cost, which the wrk numbers on a shared 2-core machine cannot resolve.
    """
    from types import SimpleNamespace

    sys.path.insert(0, str(HERE))
    from hello import app as hello
    from serve import _Ping, _settings

    from bastion.http.app import create_app

    runtime = SimpleNamespace(
        settings=_settings("granian", 0), db=_Ping(), shared=_Ping(), gateway=hello, node_id="b"
    )
    stack = create_app(runtime)  # type: ignore[arg-type]
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "https",
        "method": "GET",
        "path": "/api/orders/42",
        "raw_path": b"/api/orders/42",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"api.example.com"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            (b"authorization", b"Bearer abc.def.ghi"),
        ],
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: object) -> None:
        return None

    async def drive(app: object) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for _ in range(calls):
                await app(dict(template), receive, send)  # type: ignore[operator]
            best = min(best, time.perf_counter() - started)
        return best / calls * 1e6

    async def both() -> tuple[float, float]:
        return await drive(hello), await drive(stack)

    import uvloop

    return uvloop.run(both())


def _find(results: list[Result], engine: str, stack: str, tls: bool) -> Result:
    return next(r for r in results if (r.engine, r.stack, r.tls) == (engine, stack, tls))


def _report(results: list[Result], args: argparse.Namespace) -> str:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[
        0
    ]
    lines = [
        "# HTTP server engine benchmark",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, nproc={os.cpu_count()}, {platform.platform()}",
        f"- python: {platform.python_version()}",
        f"- load: {wrk_version.strip()}, 1 thread, {args.connections} keep-alive connections, "
        f"{args.duration} s after a {args.warmup} s warm-up; server on core 0, wrk on core 1",
        "- workload: hello-world raw ASGI app (13-byte body); TLS: ECDSA P-256 self-signed, "
        "TLS 1.3 negotiated",
        "- reproduce: `.venv/bin/python bench/server/run.py`",
        "",
        f"- rounds: {args.rounds}, cases interleaved; the table shows medians, and every "
        "round's requests/s (the machine is shared: load average at start "
        f"{os.getloadavg()[0]:.2f})",
        "",
        "| engine | app | transport | requests/s (median) | p50 ms | p99 ms | errors | rounds |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        runs = " / ".join(f"{x:,.0f}" for x in r.rps_runs)
        lines.append(
            f"| {r.engine} | {r.stack} | {'https' if r.tls else 'http'} | {r.rps:,.0f} | "
            f"{r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.errors} | {runs} |"
        )
    raw_us, stack_us = args.overhead
    lines += [
        "",
        "## Middleware overhead",
        "",
        "In-process, no sockets (`_stack_overhead`: the same hello app called 100,000 times "
        "directly, best of 5, on uvloop):",
        "",
        f"- hello app alone: {raw_us:.2f} µs per request",
        f"- inside bastion's stack (request id, security headers, errors, dispatch to the "
        f"gateway): {stack_us:.2f} µs per request",
        f"- overhead: **{stack_us - raw_us:.2f} µs per request** — at 20,000 req/s on one core "
        f"that is {(stack_us - raw_us) * 20_000 / 1e4:.1f}% of the core",
        "",
        "Over the network (bastion stack vs raw app, same engine; within the noise of a shared "
        "machine):",
        "",
    ]
    for engine in ("uvicorn", "granian"):
        for tls in (False, True):
            raw = _find(results, engine, "raw", tls)
            full = _find(results, engine, "bastion", tls)
            per_req_us = (1e6 / full.rps - 1e6 / raw.rps) if full.rps and raw.rps else 0.0
            lines.append(
                f"- {engine} {'https' if tls else 'http'}: {full.rps:,.0f} vs {raw.rps:,.0f} req/s "
                f"({(full.rps / raw.rps - 1) * 100:+.1f}%, about {per_req_us:.1f} µs per request)"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    need("wrk", "install it with `sudo apt-get install -y wrk` (Debian/Ubuntu)")
    need("taskset", "install util-linux")
    if (os.cpu_count() or 1) < 2:
        sys.exit("this benchmark pins the server and wrk to two different cores: needs 2+ CPUs")

    sys.path.insert(0, str(ROOT / "src"))
    from bastion.crypto import ensure_dev_certificate

    with tempfile.TemporaryDirectory() as tmp:
        args.overhead = _stack_overhead()
        print(f"stack overhead: {args.overhead[0]:.2f} -> {args.overhead[1]:.2f} µs", flush=True)
        cert = ensure_dev_certificate(Path(tmp) / "tls", hosts=("127.0.0.1", "localhost"))
        runs: dict[tuple[str, str, bool], list[Result]] = {case: [] for case in CASES}
        for round_ in range(1, args.rounds + 1):
            for engine, stack, tls in CASES:
                result = _case(engine, stack, tls, cert, args)
                print(
                    f"round {round_}: {engine:12} {stack:8} {'https' if tls else 'http ':5} "
                    f"{result.rps:10,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                    f"p99 {result.p99_ms:6.2f} ms  errors {result.errors}",
                    flush=True,
                )
                runs[(engine, stack, tls)].append(result)
        results = [
            Result(
                engine,
                stack,
                tls,
                rps=statistics.median(r.rps for r in case_runs),
                p50_ms=statistics.median(r.p50_ms for r in case_runs),
                p99_ms=statistics.median(r.p99_ms for r in case_runs),
                errors=sum(r.errors for r in case_runs),
                rps_runs=tuple(r.rps for r in case_runs),
            )
            for (engine, stack, tls), case_runs in runs.items()
        ]
    report = _report(results, args)
    # Keep a hand-written decision section (below this marker) across re-runs.
    write_report(args.output, report, "## Decision")


if __name__ == "__main__":
    main()
