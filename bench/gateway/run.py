"""The gateway benchmark of issue 5: bastion vs nginx ``proxy_pass``, side by side, as ratios.

Usage (from the repository root)::

    .venv/bin/python bench/gateway/run.py [--duration 10] [--warmup 3] [--connections 50]
                                          [--profile] [--quick] [--engine native|granian|uvicorn]
                                          [--baseline REV [--rounds 3]] [--shared URL]

Cases, all in one run against the same upstream:

(a) the bare upstream (nginx ``return 200`` on its own, one worker);
(b) nginx ``proxy_pass`` to it (one worker, upstream keep-alive);
(c) bastion, a public route;
(d) bastion, ``auth: [api_key]`` + a per-key rate limit (never reached) + audit;
(e) bastion, ``auth: [jwt]`` (its own ES256 token, verified-token cache) + rate limit + audit;
(f) for reference, ``floor_app.py``: a Python proxy with no features at all, under
    granian (or uvicorn with ``--engine uvicorn``): the ceiling of a Python data plane on
    this machine, and the record of why the data plane is native;
(g) both cores: nginx with two workers and one bastion process with ``server.threads: 2``,
    neither pinned, wrk pinned to core 1 as before — (b2) and (d2) at maximum load.

bastion's idle resident memory (``VmRSS`` of the ``bastion serve`` process after start-up)
is reported too.

The server under test runs on core 0 (``taskset -c 0``, one process / one
nginx worker); ``wrk`` and the upstream share core 1. Each case gets a warm-up
run, then a maximum-load run (``--connections`` keep-alive connections), then a
paced run at half of that case's maximum rate (``wrk`` Lua ``delay``) whose p99
is compared with the bare upstream paced the same way: the "added p99 at half
load" of the issue's target. bastion runs as ``bastion serve`` with TLS off
behind a trusted proxy address (plain HTTP, like nginx here) and its default
engine. ``--baseline REV`` also runs (c)-(e) on a git revision (a worktree of this
repository, with its own native extension built by cargo) side by side with this
checkout, in alternating runs: on a shared machine whose speed drifts by a quarter
between runs, the honest way to show a change's effect. ``--profile`` records case
(d) with py-spy (needs ``py-spy`` on PATH or in the venv) and writes the top
functions by own time to ``RESULTS.md``.
``--shared redis://…`` runs bastion in cluster mode (shared state in Redis, as
several nodes would), e.g. with ``--output bench/gateway/RESULTS-redis.md``.

Writes ``bench/gateway/RESULTS.md``. Needs ``wrk``, ``nginx`` and ``taskset``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
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
from benchlib import free_port, wrk_argv, wrk_errors, wrk_ms

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PYTHON = sys.executable
BASTION = [PYTHON, "-m", "bastion"]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


# -- nginx ---------------------------------------------------------------------


def nginx_conf(root: Path, body: str, workers: int = 1) -> Path:
    for sub in ("logs", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    keepalive_requests 1000000;
{body}
}}
"""
    )
    return conf


def start_nginx(conf: Path, core: str) -> subprocess.Popen[bytes]:
    """nginx pinned to ``core`` (``"0,1"``: both cores)."""
    user = [] if os.geteuid() != 0 else ["-g", "user root;"]
    return subprocess.Popen(
        ["taskset", "-c", core, "nginx", "-c", str(conf), "-e", "stderr", *user],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- wrk -----------------------------------------------------------------------


def _ms(text: str) -> float:
    ms = wrk_ms(text)
    return float("nan") if ms is None else ms


@dataclass
class Run:
    rps: float
    p50: float
    p99: float
    errors: int
    # How busy core 0 (the server under test) and core 1 (wrk and the upstream) were during the
    # run, 0..1: a case whose core 0 is not saturated is limited by core 1, not by the server.
    busy: tuple[float, float] = (float("nan"), float("nan"))


def core_times() -> list[tuple[int, int]]:
    """(busy, total) jiffies of cores 0 and 1 from /proc/stat."""
    times = []
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name in ("cpu0", "cpu1"):
            values = [int(v) for v in fields[:8]]
            idle = values[3] + values[4]  # idle + iowait
            times.append((sum(values) - idle, sum(values)))
    return times


def busy_between(
    before: list[tuple[int, int]], after: list[tuple[int, int]]
) -> tuple[float, float]:
    shares = [
        (b1 - b0) / (t1 - t0) if t1 > t0 else float("nan")
        for (b0, t0), (b1, t1) in zip(before, after, strict=True)
    ]
    return (shares[0], shares[1]) if len(shares) == 2 else (float("nan"), float("nan"))


def pacing(url: str, headers: dict[str, str], rate: float) -> tuple[int, int]:
    """wrk connections and per-request delay (ms) for a paced run at about ``rate`` req/s.

    wrk's ``delay()`` is whole milliseconds (it truncates), each connection waits
    for its answer before its delay starts (a closed loop), and wrk walks every
    pending timer on each turn of its loop (hundreds of connections make wrk
    itself the bottleneck, and its p99 the measurement). So the delay is fixed
    at 2 ms and the rate set by the number of connections, found with two 2 s
    probes that measure what each request adds to a connection's cycle.
    Without this the "half load" of a fast server was its full load (a delay
    truncated to 0) and that of a slow one about a third.
    """
    delay = 2
    connections = 10
    for _ in range(2):
        probe = wrk(url, 2, connections, headers, delay_ms=delay)
        if probe.rps <= 0:
            break
        cycle = 1000.0 * connections / probe.rps  # ms: the delay plus what a request adds
        connections = max(1, min(256, round(rate * cycle / 1000.0)))
    return connections, delay


def wrk(
    url: str,
    duration: int,
    connections: int,
    headers: dict[str, str],
    delay_ms: float | None = None,
) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        for name, value in headers.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
        if delay_ms is not None:
            script.write(f"function delay() return {delay_ms:.0f} end\n")
    try:
        before = core_times()
        argv = wrk_argv(url, duration, connections, script.name)
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        busy = busy_between(before, core_times())
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # Anchored: "Thread Stats" prints its +/- Stdev column as a percentage ("87.99%"),
    # which an unanchored "99%" matched (a p99 of "nan" in some runs).
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    return Run(
        rps,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        wrk_errors(out),
        busy,
    )


# -- bastion -------------------------------------------------------------------


def bastion_config(
    directory: Path,
    port: int,
    upstream: str,
    engine: str,
    shared: str | None = None,
    threads: int = 1,
) -> Path:
    config = directory / "bastion.yaml"
    # Several nodes on one Redis must agree on the issuer (see the README); one does too.
    cluster = f"shared: {shared}\nissuer: http://127.0.0.1:{port}\n" if shared else ""
    # The native engine's runtime gets as many threads as the server has cores here.
    server = (
        f"{{engine: native, threads: {threads}}}" if engine == "native" else f"{{engine: {engine}}}"
    )
    config.write_text(
        f"""
data_dir: {directory / "data"}
{cluster}server: {server}
listen: {{host: 127.0.0.1, port: {port}}}
tls: off
trusted_proxies: [127.0.0.1]
logging: {{level: warning}}
routes:
  - name: public
    match: {{path: /public}}
    upstream: {upstream}
    public: true
  - name: key
    match: {{path: /key}}
    upstream: {upstream}
    auth: [api_key]
    scopes: [bench]
    limits: [{{per: key, rate: 1000000/second}}]
  - name: jwt
    match: {{path: /jwt}}
    upstream: {upstream}
    auth: [jwt]
    scopes: [bench]
    limits: [{{per: subject, rate: 1000000/second}}]
"""
    )
    return config


def bastion_env(source: Path | None = None) -> dict[str, str]:
    """The environment of a bastion process; ``source``: run that checkout's ``src`` instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    return env


def cli(config: Path, *args: str, source: Path | None = None) -> dict[str, object]:
    env = bastion_env(source)
    out = subprocess.run(
        [*BASTION, *args, "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=config.parent,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def token(port: int, client_id: str, secret: str) -> str:
    import httpx

    response = httpx.post(
        f"http://127.0.0.1:{port}/oauth2/token",
        auth=(client_id, secret),
        data={"grant_type": "client_credentials", "scope": "bench"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def start_bastion(
    config: Path,
    port: int,
    procs: list[subprocess.Popen[bytes]],
    source: Path | None = None,
    cores: str = "0",
) -> tuple[subprocess.Popen[bytes], str, str]:
    """Migrate, create the bench key and client, serve on core 0; return (server, key, JWT)."""
    env = bastion_env(source)
    subprocess.run(
        [*BASTION, "migrate", "-c", str(config)],
        check=True,
        capture_output=True,
        cwd=config.parent,
        env=env,
    )
    key = cli(config, "keys", "create", "bench", "--scope", "bench", source=source)
    client = cli(
        config,
        *("clients", "create", "bench", "--grant", "client_credentials", "--scope", "bench"),
        source=source,
    )
    server = subprocess.Popen(
        ["taskset", "-c", cores, *BASTION, "serve", "-c", str(config)],
        cwd=config.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(config.parent / "bastion.log", "wb"),  # noqa: SIM115 -- lives with the server
    )
    procs.append(server)
    wait_port(port)
    jwt = token(port, str(client["client_id"]), str(client["client_secret"]))
    return server, str(key["key"]), jwt


def build_native(checkout: Path) -> None:
    """Build ``checkout``'s own native extension into its ``src/bastion`` (a worktree has none).

    The baseline runs with ``PYTHONPATH=checkout/src``: without its own ``_native`` it would
    import nothing (or, worse, this checkout's), and the comparison would not be of two builds.
    Cargo reuses this checkout's target directory, so only the crate itself is compiled
    (its uplifted ``lib_native.so`` is overwritten; this checkout's extension was already
    installed into ``src/bastion``, and ``make`` rebuilds it when needed).
    """
    manifest = checkout / "native" / "Cargo.toml"
    if not manifest.exists():
        return  # a revision from before the native data plane: pure Python
    print(f"building the native extension of the baseline ({manifest})…", flush=True)
    target = os.environ.get("CARGO_TARGET_DIR") or str(ROOT / "native" / "target")
    env = {**os.environ, "CARGO_TARGET_DIR": target}
    subprocess.run(
        ["cargo", "build", "--release", "--features", "python", "--manifest-path", str(manifest)],
        check=True,
        env=env,
    )
    built = Path(env["CARGO_TARGET_DIR"]) / "release" / "lib_native.so"
    shutil.copyfile(built, checkout / "src" / "bastion" / "_native.abi3.so")


def against_baseline(
    args: argparse.Namespace,
    work: Path,
    upstream_url: str,
    current: dict[str, tuple[str, dict[str, str]]],
    procs: list[subprocess.Popen[bytes]],
) -> dict[str, tuple[list[float], list[float]]]:
    """Cases (c)-(e) on ``args.baseline`` and on this checkout, in alternating runs.

    Both servers run on core 0 (the idle one costs nothing); each round runs every
    case on both, the order flipped every round, so slow phases of a shared machine
    hit both alike. Returns case -> (baseline req/s per round, current req/s per round).
    """
    checkout = work / "baseline-checkout"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), args.baseline],
        check=True,
        capture_output=True,
    )
    try:
        build_native(checkout)
        directory = work / "baseline"
        directory.mkdir()
        port = free_port()
        config = bastion_config(directory, port, upstream_url, args.engine, args.shared)
        _, api_key, jwt = start_bastion(config, port, procs, source=checkout)
        base = {
            "c": (f"http://127.0.0.1:{port}/public", {}),
            "d": (f"http://127.0.0.1:{port}/key", {"Authorization": f"Bearer {api_key}"}),
            "e": (f"http://127.0.0.1:{port}/jwt", {"Authorization": f"Bearer {jwt}"}),
        }
        for url, headers in base.values():
            wrk(url, args.warmup, args.connections, headers)
        runs: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in "cde"}
        duration = max(3, args.duration // 2)
        for round_ in range(args.rounds):
            for case in "cde":
                order = ((0, base), (1, current)) if round_ % 2 == 0 else ((1, current), (0, base))
                for side, servers in order:
                    url, headers = servers[case]
                    runs[case][side].append(wrk(url, duration, args.connections, headers).rps)
            print(
                "    round "
                + ", ".join(f"({c}) {runs[c][1][-1] / runs[c][0][-1]:.2f}x" for c in "cde")
                + f" of {args.baseline}",
                flush=True,
            )
        return runs
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)],
            check=False,
            capture_output=True,
        )


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def both_cores(
    args: argparse.Namespace,
    work: Path,
    upstream_url: str,
    up_port: int,
    procs: list[subprocess.Popen[bytes]],
) -> dict[str, Run]:
    """(g): nginx with two workers vs one bastion process with two threads, unpinned."""
    port, bastion_port = free_port(), free_port()
    conf = nginx_conf(
        work / "proxy2",
        f"""    upstream app {{ server 127.0.0.1:{up_port}; keepalive 64; }}
    server {{ listen 127.0.0.1:{port}; keepalive_timeout 300s;
        location / {{ proxy_pass http://app; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_set_header Host $host; }} }}""",
        workers=2,
    )
    procs.append(start_nginx(conf, "0,1"))
    directory = work / "both"
    directory.mkdir()
    config = bastion_config(
        directory, bastion_port, upstream_url, args.engine, args.shared, threads=2
    )
    _, api_key, _ = start_bastion(config, bastion_port, procs, cores="0,1")
    wait_port(port)
    runs: dict[str, Run] = {}
    for case, url, headers in (
        ("b2", f"http://127.0.0.1:{port}/public", {}),
        ("d2", f"http://127.0.0.1:{bastion_port}/key", {"Authorization": f"Bearer {api_key}"}),
    ):
        wrk(url, args.warmup, args.connections, headers)
        runs[case] = run = wrk(url, args.duration, args.connections, headers)
        print(f"({case}) {run.rps:9,.0f} req/s  p99 {run.p99:6.2f} ms", flush=True)
    return runs


def default_engine() -> str:
    from bastion.settings.server import ServerSettings

    return str(ServerSettings().engine)


def start_floor(
    engine: str, port: int, up_port: int, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Case (f): floor_app.py (a proxy with no features) under ``engine``, on core 0."""
    bin_dir = Path(PYTHON).parent
    if engine == "uvicorn":
        command = [str(bin_dir / "uvicorn"), "--loop", "uvloop", "--http", "httptools"]
        command += ["--no-access-log", "--log-level", "warning", "--port", str(port)]
    else:
        command = [str(bin_dir / "granian"), "--interface", "asgi", "--loop", "uvloop"]
        command += ["--workers", "1", "--no-ws", "--log-level", "warning", "--port", str(port)]
    return subprocess.Popen(
        ["taskset", "-c", "0", *command, "floor_app:app"],
        cwd=HERE,
        env={**env, "UP_PORT": str(up_port), "PYTHONPATH": str(HERE)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- profile -------------------------------------------------------------------


def py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    return found if Path(found).exists() else None


def top_functions(raw: Path, limit: int = 15) -> list[tuple[str, float]]:
    """Own-time share per function from py-spy's collapsed-stack ("raw") output."""
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frame = stack.split(";")[-1]
        own[re.sub(r"\s*\(.*?/site-packages/", " (", frame)] += int(count)
        total += int(count)
    return [(frame, 100.0 * n / total) for frame, n in own.most_common(limit)] if total else []


# -- main ----------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="3 s runs (smoke test)")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--engine",
        choices=("native", "granian", "uvicorn"),
        default=None,
        help="bastion's HTTP engine (default: bastion's own default)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run (c)-(e) on git revision REV, alternating with this checkout",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (--baseline)")
    parser.add_argument(
        "--two-cores",
        action="store_true",
        help="also run (g): nginx with 2 workers vs bastion with 2 threads, unpinned",
    )
    parser.add_argument(
        "--shared",
        metavar="URL",
        help="bastion's shared state, e.g. redis://127.0.0.1:6379/15 (cluster mode; "
        "default: in-process)",
    )
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup = 3, 1
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y {tool})")

    work = Path(tempfile.mkdtemp(prefix="bastion-bench-gw-"))
    up_port, nginx_port, bastion_port = free_port(), free_port(), free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The upstream: nginx answering a small body, on core 1 with wrk.
        up_conf = nginx_conf(
            work / "upstream",
            f"""    server {{ listen 127.0.0.1:{up_port} reuseport; keepalive_timeout 300s;
        location / {{ default_type text/plain; return 200 "hello, world\\n"; }} }}""",
        )
        procs.append(start_nginx(up_conf, "1"))
        proxy_conf = nginx_conf(
            work / "proxy",
            f"""    upstream app {{ server 127.0.0.1:{up_port}; keepalive 64; }}
    server {{ listen 127.0.0.1:{nginx_port}; keepalive_timeout 300s;
        location / {{ proxy_pass http://app; proxy_http_version 1.1;
            proxy_set_header Connection ""; proxy_set_header Host $host; }} }}""",
        )
        procs.append(start_nginx(proxy_conf, "0"))

        if args.engine is None:
            args.engine = default_engine()
        config = bastion_config(work, bastion_port, upstream_url, args.engine, args.shared)
        server, api_key, jwt = start_bastion(config, bastion_port, procs)
        time.sleep(2)
        idle_rss = rss_mib(server.pid)
        print(f"bastion serve idle RSS: {idle_rss:.0f} MiB", flush=True)
        env = bastion_env()
        floor_port = free_port()
        floor_engine = "uvicorn" if args.engine == "uvicorn" else "granian"
        procs.append(start_floor(floor_engine, floor_port, up_port, env))
        for port in (up_port, nginx_port, floor_port):
            wait_port(port)

        cases: list[tuple[str, str, str, dict[str, str]]] = [
            ("a", "bare upstream (nginx return 200)", f"{upstream_url}/public", {}),
            ("b", "nginx proxy_pass", f"http://127.0.0.1:{nginx_port}/public", {}),
            ("c", "bastion, public route", f"http://127.0.0.1:{bastion_port}/public", {}),
            (
                "d",
                "bastion, API key + rate limit + audit",
                f"http://127.0.0.1:{bastion_port}/key",
                {"Authorization": f"Bearer {api_key}"},
            ),
            (
                "e",
                "bastion, JWT (cached) + rate limit + audit",
                f"http://127.0.0.1:{bastion_port}/jwt",
                {"Authorization": f"Bearer {jwt}"},
            ),
            (
                "f",
                "minimal Python proxy, no features (reference)",
                f"http://127.0.0.1:{floor_port}/public",
                {},
            ),
        ]
        results: dict[str, Run] = {}
        half: dict[str, tuple[Run, Run]] = {}
        for case, label, url, headers in cases:
            wrk(url, args.warmup, args.connections, headers)
            results[case] = run = wrk(url, args.duration, args.connections, headers)
            print(
                f"({case}) {label:44} {run.rps:9,.0f} req/s  p50 {run.p50:6.2f} ms  "
                f"p99 {run.p99:6.2f} ms  errors {run.errors}  "
                f"cores busy {run.busy[0]:.0%}/{run.busy[1]:.0%}",
                flush=True,
            )
            if case in "bcdef":
                connections, delay = pacing(url, headers, run.rps / 2)
                mine = wrk(url, args.duration, connections, headers, delay_ms=delay)
                bare = wrk(cases[0][2], args.duration, connections, {}, delay_ms=delay)
                half[case] = (mine, bare)
                print(
                    f"    at half load ({mine.rps:,.0f} req/s): p99 {mine.p99:.2f} ms vs bare "
                    f"upstream {bare.p99:.2f} ms -> added {mine.p99 - bare.p99:+.2f} ms",
                    flush=True,
                )
        both = both_cores(args, work, upstream_url, up_port, procs) if args.two_cores else {}
        compared: dict[str, tuple[list[float], list[float]]] = {}
        if args.baseline:
            current = {case: (url, headers) for case, _, url, headers in cases if case in "cde"}
            compared = against_baseline(args, work, upstream_url, current, procs)
        profile: list[tuple[str, float]] = []
        if args.profile:
            spy = py_spy()
            if spy is None:
                print("py-spy not found: no profile", flush=True)
            else:
                raw = work / "profile.txt"
                recorder = subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--format",
                        "raw",
                        "--rate",
                        "250",
                        "--duration",
                        str(args.duration),
                        "--output",
                        str(raw),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                wrk(cases[3][2], args.duration, args.connections, cases[3][3])
                recorder.wait(timeout=60)
                if raw.exists():
                    profile = top_functions(raw)
        write_results(args, cases, results, half, profile, compared, both, idle_rss)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def write_results(
    args: argparse.Namespace,
    cases: list[tuple[str, str, str, dict[str, str]]],
    results: dict[str, Run],
    half: dict[str, tuple[Run, Run]],
    profile: list[tuple[str, float]],
    compared: dict[str, tuple[list[float], list[float]]] | None = None,
    both: dict[str, Run] | None = None,
    idle_rss: float | None = None,
) -> None:
    nginx = results["b"].rps
    lines = [
        "# Gateway benchmark: bastion vs nginx `proxy_pass`",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; "
        f"`bench/gateway/run.py --duration {args.duration} --connections {args.connections}"
        f" --engine {args.engine}"
        + (f" --shared {args.shared}" if args.shared else "")
        + (f" --baseline {args.baseline}" if args.baseline else "")
        + (" --two-cores" if args.two_cores else "")
        + "`. "
        "Server under test on core 0 (one process / one nginx worker), wrk and the upstream on "
        "core 1. Ratios are to (b), measured in the same run. "
        + (
            "bastion runs in cluster mode: its shared state (limits, deny-list) is the Redis "
            "above, on core 1. "
            if args.shared
            else ""
        )
        + "What the numbers mean: [README.md](README.md).",
        "",
        "| case | what | req/s | x nginx (b) | p50 ms | p99 ms | errors | core 0 / core 1 busy | "
        "p99 at half load | added p99 vs bare upstream |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, label, _, _ in cases:
        run = results[case]
        paced = half.get(case)
        paced_cells = (
            f"{paced[0].p99:.2f} ms @ {paced[0].rps:,.0f}/s | {paced[0].p99 - paced[1].p99:+.2f} ms"
            if paced
            else "- | -"
        )
        lines.append(
            f"| ({case}) | {label} | {run.rps:,.0f} | {run.rps / nginx:.2f} | {run.p50:.2f} | "
            f"{run.p99:.2f} | {run.errors} | {run.busy[0]:.0%} / {run.busy[1]:.0%} | "
            f"{paced_cells} |"
        )
    lines += [
        "",
        "Targets (issue 14): (c) ≥ 0.90 x nginx; (d) and (e) ≥ 0.75 x; added p99 at half of "
        "max load ≤ 1 ms for (c)-(e); idle RSS ≤ 100 MB.",
        "",
    ]
    for case, target in (("c", 0.90), ("d", 0.75), ("e", 0.75)):
        ratio = results[case].rps / nginx
        verdict = "meets" if ratio >= target else "falls short of"
        lines.append(f"- ({case}) reaches {ratio:.2f} x nginx: {verdict} the {target} target.")
        if case in half:
            added = half[case][0].p99 - half[case][1].p99
            verdict = "meets" if added <= 1.0 else "falls short of"
            lines.append(
                f"- ({case}) adds {added:+.2f} ms p99 at half load: {verdict} the 1 ms target."
            )
    if idle_rss is not None:
        verdict = "meets" if idle_rss * 1.048576 <= 100 else "falls short of"
        lines.append(
            f"- `bastion serve` idle RSS {idle_rss:.0f} MiB ({idle_rss * 1.048576:.0f} MB): "
            f"{verdict} the 100 MB target."
        )
    if both:
        ratio = both["d2"].rps / both["b2"].rps if both["b2"].rps else float("nan")
        lines += [
            "",
            "## Both cores",
            "",
            "nginx with two workers vs one bastion process (`server.threads: 2`), neither "
            "pinned; wrk on core 1 as above, the upstream on core 1.",
            "",
            "| case | req/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
            *[
                f"| ({case}) {label} | {both[case].rps:,.0f} | {both[case].p50:.2f} | "
                f"{both[case].p99:.2f} | {both[case].errors} |"
                for case, label in (
                    ("b2", "nginx proxy_pass, 2 workers"),
                    ("d2", "bastion, API key + rate limit + audit, 2 threads"),
                )
            ],
            "",
            f"(d2) / (b2) = {ratio:.2f}.",
        ]
    if compared:
        lines += [
            "",
            f"## Against `{args.baseline}`, side by side",
            "",
            f"The same cases on revision `{args.baseline}` and on this checkout, both servers "
            f"on core 0, {args.rounds} rounds of alternating {max(3, args.duration // 2)} s "
            "runs (order flipped each round): the comparison a shared machine's slow and "
            "fast phases cannot skew.",
            "",
            "| case | baseline req/s (median) | this checkout req/s (median) | ratio per round "
            "| median ratio |",
            "|---|---:|---:|---|---:|",
        ]
        for case in "cde":
            before_runs, after_runs = compared[case]
            # Each round pairs two runs taken back to back: their ratio is what drift
            # between rounds cannot move, so the verdict is the median of those.
            ratios = [a / b for b, a in zip(before_runs, after_runs, strict=True) if b > 0]
            before, after = statistics.median(before_runs), statistics.median(after_runs)
            lines.append(
                f"| ({case}) | {before:,.0f} | {after:,.0f} | "
                + ", ".join(f"{r:.2f}x" for r in ratios)
                + f" | **{statistics.median(ratios):.2f}x** |"
            )
    if profile:
        lines += [
            "",
            "## Profile of (d) (py-spy, own time, top functions)",
            "",
            "| share | function |",
            "|---:|---|",
            *[f"| {share:.1f}% | `{frame}` |" for frame, share in profile],
        ]
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}", flush=True)


if __name__ == "__main__":
    main()
