"""Instructions per gateway request, per case, under callgrind: the measure to trust today.

Usage (from the repository root, after building a profiling extension, see README "Profiling")::

    .venv/bin/python bench/gateway/profile.py [--requests 2000] [--keep DIR] [--function h1::serve]

Starts the bench's nginx upstream (``return 200``) and ``bastion serve`` with the bench's config
(``run.py``'s, so cases (c) public, (d) API key + limit + audit, (e) cached JWT + limit + audit)
under ``valgrind --tool=callgrind --instr-atstart=no``. For each case it warms the caches with
requests while collection is off, then turns collection on (``callgrind_control -i on``), sends
``--requests`` sequential keep-alive requests with ``http.client``, dumps the counters
(``callgrind_control -d``) and turns collection off again. Each dump is read with
``callgrind_annotate --inclusive=yes`` and two figures per request are printed:

- ``h1::serve`` — the inclusive instruction count of the connection task (``--function``),
  divided by the number of requests: the figure earlier notes quote. callgrind's inclusive
  costs of async code are inflated by call cycles (a future polled from the runtime that polls
  it), so it is several times the real cost; it still moves with every cut.
- ``front thread`` — every instruction the front thread (the one that runs ``h1::serve``;
  ``--separate-threads=yes``) executed during the case, divided by the number of requests:
  exact, the whole per-request cost of the native data plane (its runtime, parsing, the
  decision, the proxy, system-call wrappers), without the Python control plane's threads.

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Started by path, so bench/ and bench/gateway/ are not on sys.path by themselves.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import free_port, need, stop
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


def front_thread(dumps: list[Path], function: str) -> tuple[Path, int]:
    """The dump of the thread that ran ``function``, and its total instructions."""
    for dump in dumps:
        text = dump.read_text(errors="replace")
        if function in text:
            total = re.search(r"^summary:\s*(\d+)", text, re.M) or re.search(
                r"^totals:\s*(\d+)", text, re.M
            )
            return dump, int(total.group(1)) if total else 0
    raise SystemExit(f"no thread ran {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--function", default="h1::serve")
    parser.add_argument("--verbose", action="store_true", help="list every thread's dump")
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
                "--separate-threads=yes",
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
            # Zeroed after collection is on: the first dump otherwise carries costs of the
            # threads' start (tens of thousands of instructions per request in case (c)).
            callgrind_control(server.pid, "--zero")
            before = set(work.glob("callgrind.out*"))
            send(port, path, credentials[case], args.requests)
            callgrind_control(server.pid, "--dump=case-" + case)
            callgrind_control(server.pid, "-i", "off")
            dumps = sorted(set(work.glob("callgrind.out*")) - before)
            if args.verbose:
                for d in dumps:
                    text = d.read_text(errors="replace")
                    m = re.search(r"^summary:\s*(\d+)", text, re.M)
                    print(d.name, m and m.group(1), args.function in text, flush=True)
            dump, total = front_thread(dumps, args.function)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(dump, args.keep / f"callgrind.out.{case}")
            results[case] = inclusive(dump, args.function) // args.requests
            print(
                f"({case}) {label:34} {args.function} {results[case]:8,}   "
                f"front thread {total // args.requests:7,}   instructions per request",
                flush=True,
            )
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                stop(proc, 60)  # bastion under valgrind takes a while to stop
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
