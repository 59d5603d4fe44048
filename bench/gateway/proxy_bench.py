"""Micro-benchmark of the gateway proxy: wrk -> uvicorn(Gateway) -> demo echo, vs wrk -> echo.

Usage (from the repository root)::

    .venv/bin/python bench/gateway/proxy_bench.py [--duration 10] [--connections 50]

Starts ``python -m bastion.demo.echo`` (the bare upstream) and uvicorn
(uvloop + httptools) serving :class:`bastion.gateway.Gateway` with one public
route to it, then runs ``wrk`` against the echo server directly and through
the gateway. On a 2-core machine the three processes share the cores, so the
numbers compare configurations rather than measure a ceiling. Prints requests/s
and latency; never used as a timed assertion in tests.

Needs ``wrk`` (Debian/Ubuntu: ``sudo apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

PYTHON = sys.executable


@dataclass(frozen=True)
class _Match:
    path: str
    host: str | None = None
    methods: list[str] | None = None


@dataclass(frozen=True)
class _Route:
    name: str
    match: _Match
    upstream: str
    public: bool = True
    auth: list[str] = field(default_factory=list)
    strip_prefix: bool = False
    timeout: float = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def serve_gateway(port: int, upstream: str) -> None:
    """Run uvicorn with the Gateway (errors rendered minimally: http/ owns real rendering)."""
    import uvicorn

    from bastion.errors import BastionError
    from bastion.gateway import Gateway

    gateway = Gateway([_Route("bench", _Match("/"), upstream)])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await gateway(scope, receive, send)
        except BastionError as exc:
            body = exc.code.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": exc.status,
                    "headers": [(b"content-length", b"%d" % len(body))],
                }
            )
            await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app, port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )


def _wrk(url: str, duration: int, connections: int) -> tuple[float, str]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+(\S+)", out)
    return rps, p99.group(1) if p99 else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--serve-gateway", nargs=2, metavar=("PORT", "UPSTREAM"))
    args = parser.parse_args()
    if args.serve_gateway:
        serve_gateway(int(args.serve_gateway[0]), args.serve_gateway[1])
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    echo_port, gw_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [PYTHON, "-m", "bastion.demo.echo", "--port", str(echo_port)],
            stdout=subprocess.DEVNULL,
            env=env,
        ),
        subprocess.Popen(
            [
                PYTHON,
                __file__,
                "--serve-gateway",
                str(gw_port),
                f"http://127.0.0.1:{echo_port}",
            ],
            env=env,
        ),
    ]
    try:
        _wait_port(echo_port)
        _wait_port(gw_port)
        for label, url in [
            ("echo upstream directly", f"http://127.0.0.1:{echo_port}/bench"),
            ("through bastion gateway", f"http://127.0.0.1:{gw_port}/bench"),
        ]:
            _wrk(url, args.warmup, args.connections)
            rps, p99 = _wrk(url, args.duration, args.connections)
            print(f"{label:28} {rps:10,.0f} req/s   p99 {p99}", flush=True)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
