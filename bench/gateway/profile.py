"""Instructions per gateway request, per case, under callgrind: the measure to trust today.

Usage (from the repository root, after building a profiling extension, see README "Profiling")::

    .venv/bin/python bench/gateway/profile.py [--requests 2000] [--keep DIR] [--function h1::serve]

Starts the bench's nginx upstream (``return 200``) and ``bastion serve`` with the bench's config
(``run.py``'s, so cases (c) public, (d) API key + limit + audit, (e) cached JWT + limit + audit)
under ``valgrind --tool=callgrind --instr-atstart=no``. For each case it warms the caches with
requests while collection is off, then turns collection on (``callgrind_control -i on``), sends
``--requests`` sequential keep-alive requests with ``http.client``, dumps the counters
(``callgrind_control -d``) and turns collection off again. Each dump is read with
``callgrind_annotate --inclusive=yes`` and the inclusive instruction count of the connection
task (``--function``, default ``h1::serve``) divided by the number of requests is printed.

Instruction counts are deterministic to a few tenths of a per cent between runs of one build, so
a change's effect shows without a quiet machine; valgrind's virtual CPU has no SHA extensions
(ring takes its AVX path there), so (e)'s token digest costs more here than on the real CPU.
``--keep DIR`` keeps the callgrind files (``callgrind.out.<case>``) for a closer look with
``callgrind_annotate --inclusive=yes --auto=yes``.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Started by path, so bench/ and bench/gateway/ are not on sys.path by themselves.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import free_port, need
from run import BASTION, bastion_config, bastion_env, cli, nginx_conf, start_nginx, token

CASES = (
    ("c", "public route", "/public"),
    ("d", "API key + rate limit + audit", "/key"),
    ("e", "cached JWT + rate limit + audit", "/jwt"),
)


def wait_port(port: int, timeout: float) -> None:
    """Wait for a listener on ``port`` (bastion under valgrind starts in tens of seconds)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"nothing listens on port {port} after {timeout:.0f} s")


def send(port: int, path: str, headers: dict[str, str], count: int) -> None:
    """``count`` sequential requests on one keep-alive connection; each must answer 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        for _ in range(count):
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"{path}: HTTP {response.status}")
    finally:
        conn.close()


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def inclusive(out_file: Path, function: str) -> int:
    """The largest inclusive instruction count of a function whose name contains ``function``."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(out_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    best = 0
    for line in text.splitlines():
        match = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
        if match and function in match.group(2):
            best = max(best, int(match.group(1).replace(",", "")))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--function", default="h1::serve")
    parser.add_argument("--keep", type=Path, help="keep the callgrind files in this folder")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "nginx", "taskset"):
        need(tool, f"apt-get install -y {tool.split('_')[0]}")

    work = Path(tempfile.mkdtemp(prefix="bastion-profile-gw-"))
    up_port, port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up_conf = nginx_conf(
            work / "upstream",
            f"""    server {{ listen 127.0.0.1:{up_port} reuseport; keepalive_timeout 300s;
        location / {{ default_type text/plain; return 200 "hello, world\\n"; }} }}""",
        )
        procs.append(start_nginx(up_conf, "1"))
        config = bastion_config(work, port, f"http://127.0.0.1:{up_port}", "native")
        env = bastion_env()
        subprocess.run(
            [*BASTION, "migrate", "-c", str(config)], check=True, capture_output=True, cwd=work
        )
        key = cli(config, "keys", "create", "bench", "--scope", "bench")
        client = cli(
            config,
            *("clients", "create", "bench", "--grant", "client_credentials", "--scope", "bench"),
        )
        out_base = work / "callgrind.out"
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out_base}",
                *BASTION,
                "serve",
                "-c",
                str(config),
            ],
            cwd=work,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "bastion.log", "wb"),  # noqa: SIM115 -- lives with the server
        )
        procs.append(server)
        wait_port(port, 600)
        jwt = token(port, str(client["client_id"]), str(client["client_secret"]))
        credentials = {"c": {}, "d": {"Authorization": f"Bearer {key['key']}"}}
        credentials["e"] = {"Authorization": f"Bearer {jwt}"}

        results: dict[str, int] = {}
        for case, label, path in CASES:
            send(port, path, credentials[case], args.warmup)
            callgrind_control(server.pid, "-i", "on")
            send(port, path, credentials[case], args.requests)
            callgrind_control(server.pid, "--dump=case-" + case)
            callgrind_control(server.pid, "-i", "off")
            dumps = sorted(work.glob("callgrind.out.*"), key=lambda p: p.stat().st_mtime)
            dump = dumps[-1]
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dump, args.keep / f"callgrind.out.{case}")
            results[case] = inclusive(dump, args.function) // args.requests
            print(
                f"({case}) {label:34} {results[case]:8,} instructions per request "
                f"(inclusive {args.function})",
                flush=True,
            )
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
