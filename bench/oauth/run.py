"""Benchmark the client-credentials token endpoint: bastion vs node ``oidc-provider``.

Usage (from the repository root)::

    .venv/bin/python bench/oauth/run.py            # 3 interleaved rounds, 10 s each; RESULTS.md
    .venv/bin/python bench/oauth/run.py --quick    # smoke run: 1 round, 3 s, prints only

What is measured: ``POST`` to each server's token endpoint (from its RFC 8414 /
OIDC discovery document) with ``grant_type=client_credentials&scope=read`` and
the client authenticated by HTTP Basic (``client_secret_basic``); each response
is an RFC 9068 JWT access token (``typ: at+jwt``) signed with ES256, lifetime
900 s. Both servers are configured alike (see RESULTS.md, "Equivalence") and
every case starts by checking one real response against that contract.

Method: each case starts one server process pinned to core 0 (``taskset -c 0``)
and drives it with ``wrk`` pinned to core 1 (1 thread, 32 keep-alive
connections, a Lua script for the POST) for the measured window after a
warm-up. Cases are interleaved (bastion and oidc-provider back to back, the
order alternating per round) so both see the same machine; the report gives
medians and the ratio bastion / oidc-provider — ratios, not absolute numbers,
are what carries across machines.

Needs ``wrk`` (``apt-get install -y wrk``), ``taskset`` (util-linux), Node 20+
and ``npm ci`` in bench/oauth (the harness runs it when node_modules is missing).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Started by path, so bench/ (the home of benchlib) is not on sys.path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import free_port, need, run_wrk, stop, write_report, wrk_ms

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BASTION = Path(sys.executable).with_name("bastion")
PEER_SCRIPT = HERE / "oidc_provider_peer.mjs"

SERVERS = ("bastion", "oidc-provider")
TRANSPORTS = ("http", "https")
CLIENT_NAME = "bench"
SCOPE = "read"
TTL = 900
# The resource server both issue tokens for. oidc-provider needs one to issue JWTs at all
# (RFC 8707 resource indicators); bastion uses the client's default audience.
AUDIENCE = "https://api.bench.example"
BODY = f"grant_type=client_credentials&scope={SCOPE}"


class BenchError(Exception):
    """A server did not start, did not issue the expected token, or a tool failed."""


@dataclass
class Credentials:
    client_id: str
    client_secret: str

    def basic(self) -> str:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: float  # server CPU seconds per wall second over the measured window (1.0 = one core)


@dataclass
class TokenCheck:
    """What one real response looked like (recorded for the equivalence notes)."""

    token_endpoint: str
    header: dict[str, Any]
    claims: dict[str, Any]
    token_bytes: int
    response_bytes: int
    cache_control: str


@dataclass
class Case:
    server: str
    transport: str
    samples: list[Sample] = field(default_factory=list)
    check: TokenCheck | None = None

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in self.samples))


# ---------------------------------------------------------------------------
# small helpers


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def _b64json(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise BenchError(f"token segment is not base64url JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BenchError("token segment is not a JSON object")
    return value


def _insecure_context() -> ssl.SSLContext:
    # The harness talks to its own self-signed loopback certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=_insecure_context()) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(
                f"server exited early with code {proc.returncode}; its output:\n"
                + log.read_text(errors="replace")[-4000:]
            )
        try:
            status, _, _ = _http("GET", url)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer 200 within {timeout:.0f} s")


@contextmanager
def _process(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop(proc, 20)


# ---------------------------------------------------------------------------
# the two servers


class Server:
    """One side of the comparison: how to start it and how its client authenticates."""

    name: str
    credentials: Credentials

    def command(self, transport: str, port: int) -> tuple[list[str], dict[str, str], str]:
        """Return ``(argv, env, base_url)`` to start the server (argv without taskset)."""
        raise NotImplementedError

    def discovery_path(self) -> str:
        """The path of the server's discovery document (which names its token endpoint)."""
        raise NotImplementedError

    def ready_path(self) -> str:
        """A path that answers 200 once the server accepts requests."""
        return self.discovery_path()

    def default_token_path(self) -> str | None:
        """Where the token endpoint is when discovery does not answer (None: fail)."""
        return None


class OidcProvider(Server):
    name = "oidc-provider"

    def __init__(self, cert: tuple[Path, Path]) -> None:
        self.cert = cert
        self.credentials = Credentials(CLIENT_NAME, secrets.token_urlsafe(32))

    def command(self, transport: str, port: int) -> tuple[list[str], dict[str, str], str]:
        env = dict(
            os.environ,
            NODE_ENV="production",
            PEER_PORT=str(port),
            PEER_CLIENT_ID=self.credentials.client_id,
            PEER_CLIENT_SECRET=self.credentials.client_secret,
            PEER_AUDIENCE=AUDIENCE,
            PEER_SCOPE=SCOPE,
            PEER_TTL=str(TTL),
        )
        if transport == "https":
            env["PEER_TLS_CERT"], env["PEER_TLS_KEY"] = (str(p) for p in self.cert)
        return ["node", str(PEER_SCRIPT)], env, f"{transport}://127.0.0.1:{port}"

    def discovery_path(self) -> str:
        return "/.well-known/openid-configuration"


class Bastion(Server):
    name = "bastion"

    def __init__(self, workdir: Path, cert: tuple[Path, Path]) -> None:
        self.workdir = workdir
        self.cert = cert
        self.data_dir = workdir / "data"
        self.configs: dict[str, Path] = {}
        for transport in TRANSPORTS:
            self.configs[transport] = workdir / f"bastion-{transport}.yaml"
        self.credentials = self._create_client()

    def _config(self, transport: str, port: int) -> Path:
        tls = (
            "tls: off\n"
            if transport == "http"
            else f"tls:\n  mode: files\n  cert: {self.cert[0]}\n  key: {self.cert[1]}\n"
        )
        path = self.configs[transport]
        path.write_text(
            f"data_dir: {self.data_dir}\n"
            f"listen:\n  host: 127.0.0.1\n  port: {port}\n"
            f"{tls}"
            # Required with tls off; harmless (and kept identical) with TLS.
            "trusted_proxies: [127.0.0.1]\n"
            f"storage: sqlite:///{self.data_dir / 'bastion.db'}\n"
            "shared: memory://\n"
            "logging:\n  level: warning\n"
            "server:\n  access_log: false\n"
            "signing_keys:\n  algorithm: ES256\n"
            f"tokens:\n  access_token_ttl: {TTL}\n"
        )
        return path

    def _create_client(self) -> Credentials:
        config = self._config("http", free_port())
        argv = [
            str(BASTION),
            "clients",
            "create",
            CLIENT_NAME,
            "--grant",
            "client_credentials",
            "--scope",
            SCOPE,
            # The first audience is the client's default: the peer's resource server.
            "--audience",
            AUDIENCE,
            "--json",
        ]
        self.create_command = " ".join(["bastion", *argv[1:]])
        argv += ["-c", str(config)]
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(
                f"`{' '.join(argv[1:])}` failed with code {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        try:
            created = json.loads(done.stdout)
        except ValueError as exc:
            raise BenchError(
                f"`bastion clients create --json` printed no JSON:\n{done.stdout}"
            ) from exc
        client_id = _find_key(created, ("client_id", "id"))
        client_secret = _find_key(created, ("client_secret", "secret"))
        if not client_id or not client_secret:
            raise BenchError(f"no client_id/client_secret in `bastion clients create`: {created}")
        return Credentials(client_id, client_secret)

    def command(self, transport: str, port: int) -> tuple[list[str], dict[str, str], str]:
        config = self._config(transport, port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        return [str(BASTION), "serve", "-c", str(config)], env, f"{transport}://127.0.0.1:{port}"

    def discovery_path(self) -> str:
        return "/.well-known/oauth-authorization-server"

    def ready_path(self) -> str:
        return "/readyz"

    def default_token_path(self) -> str | None:
        return "/oauth2/token"


def _find_key(value: Any, names: tuple[str, ...]) -> str | None:
    """The first string under one of ``names`` in ``value`` (searched breadth-first)."""
    queue = [value]
    for name in names:
        queue = [value]
        while queue:
            item = queue.pop(0)
            if isinstance(item, dict):
                if isinstance(item.get(name), str):
                    return str(item[name])
                queue.extend(item.values())
            elif isinstance(item, list):
                queue.extend(item)
    return None


# ---------------------------------------------------------------------------
# one case: start, check one token, warm up, measure


def _check_token(base_url: str, server: Server) -> TokenCheck:
    """Fetch one token and check it against the contract both servers must meet.

    Raises:
        BenchError: discovery or the token request failed, or the token is not an
            ES256 ``at+jwt`` for client ``credentials.client_id`` with scope ``read``,
            a 900 s lifetime and an audience.
    """
    status, _, raw = _http("GET", base_url + server.discovery_path())
    if status == 200:
        # Only the path: the issuer may say "localhost", which could resolve to ::1 first.
        endpoint = base_url + urllib.parse.urlsplit(json.loads(raw)["token_endpoint"]).path
    elif (fallback := server.default_token_path()) is not None:
        endpoint = base_url + fallback
    else:
        raise BenchError(f"{server.name}: discovery answered {status}: {raw[:300]!r}")
    status, headers, raw = _http(
        "POST",
        endpoint,
        headers={
            "Authorization": server.credentials.basic(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=BODY.encode(),
    )
    if status != 200:
        raise BenchError(f"{server.name}: token endpoint answered {status}: {raw[:500]!r}")
    response = json.loads(raw)
    token = str(response.get("access_token", ""))
    parts = token.split(".")
    if len(parts) != 3:
        raise BenchError(f"{server.name}: access_token is not a JWS (3 segments): {token[:80]!r}")
    header, claims = _b64json(parts[0]), _b64json(parts[1])
    problems = []
    if header.get("alg") != "ES256":
        problems.append(f"alg {header.get('alg')!r}")
    if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
        problems.append(f"typ {header.get('typ')!r}")
    if claims.get("client_id") != server.credentials.client_id:
        problems.append(f"client_id {claims.get('client_id')!r}")
    if claims.get("scope") != SCOPE:
        problems.append(f"scope {claims.get('scope')!r}")
    if not claims.get("aud"):
        problems.append("no aud")
    if claims.get("exp", 0) - claims.get("iat", 0) != TTL:
        problems.append(f"lifetime {claims.get('exp', 0) - claims.get('iat', 0)} s")
    if response.get("token_type", "").lower() != "bearer" or response.get("expires_in") != TTL:
        problems.append(f"token response {response!r}")
    if problems:
        raise BenchError(f"{server.name}: token does not match the contract: {', '.join(problems)}")
    return TokenCheck(
        token_endpoint=endpoint,
        header=header,
        claims=claims,
        token_bytes=len(token),
        response_bytes=len(raw),
        cache_control=headers.get("Cache-Control", headers.get("cache-control", "")),
    )


def _ms(text: str) -> float:
    ms = wrk_ms(text)
    if ms is None:
        raise BenchError(f"unparseable wrk latency {text!r}")
    return ms


def _wrk_script(path: Path, server: Server) -> Path:
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = "{BODY}"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "{server.credentials.basic()}"\n'
    )
    return path


def _run_case(server: Server, case: Case, workdir: Path, args: argparse.Namespace) -> Sample:
    port = free_port()
    argv, env, base_url = server.command(case.transport, port)
    log = workdir / f"{server.name}-{case.transport}.log"
    # taskset execs the server, so proc.pid is the server's own pid.
    with _process(["taskset", "-c", "0", *argv], env, log, workdir) as proc:
        _wait_ready(base_url + server.ready_path(), proc, log)
        check = _check_token(base_url, server)
        case.check = case.check or check
        script = _wrk_script(workdir / f"{server.name}.lua", server)
        run_wrk(check.token_endpoint, args.warmup, args.connections, script)
        cpu_before, started = _cpu_seconds(proc.pid), time.monotonic()
        run = run_wrk(check.token_endpoint, args.duration, args.connections, script)
        cpu = (_cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - started)
    return Sample(run.rps, run.p50, run.p99, run.errors, cpu)


# ---------------------------------------------------------------------------
# report


def _versions() -> dict[str, str]:
    def out(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except OSError:
            return "?"
        # Not the exit code: `wrk -v` prints its version, then usage, and exits 1.
        text = (done.stdout or done.stderr).strip()
        return text.splitlines()[0] if text else "?"

    from importlib.metadata import PackageNotFoundError, version

    def dist(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "?"

    peer = HERE / "node_modules" / "oidc-provider" / "package.json"
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "bastion": dist("bastion"),
        "python": platform.python_version(),
        "oidc-provider": json.loads(peer.read_text())["version"] if peer.exists() else "?",
        "node": out(["node", "--version"]),
        "wrk": out(["wrk", "-v"]).split(" Copyright")[0],
        "cpu": cpu,
    }


def _ratio(cases: dict[tuple[str, str], Case], transport: str) -> tuple[float, list[float]]:
    ours, peer = cases[("bastion", transport)], cases[("oidc-provider", transport)]
    per_round = [a.rps / b.rps for a, b in zip(ours.samples, peer.samples, strict=True) if b.rps]
    return ours.median("rps") / peer.median("rps"), per_round


def _describe(check: TokenCheck | None) -> str:
    if check is None:
        return "(not measured)"
    claims = ", ".join(sorted(check.claims))
    return (
        f"header `{json.dumps(check.header, sort_keys=True)}`; claims {claims} "
        f"(aud `{check.claims.get('aud')}`, iss `{check.claims.get('iss')}`); "
        f"token {check.token_bytes} B, response body {check.response_bytes} B; "
        f"Cache-Control `{check.cache_control}`"
    )


def _report(
    cases: dict[tuple[str, str], Case],
    args: argparse.Namespace,
    loads: tuple[float, float],
    create_command: str,
) -> str:
    v = _versions()
    lines = [
        "# OAuth 2.0 token endpoint benchmark: bastion vs node oidc-provider",
        "",
        "Client-credentials grant, `client_secret_basic`, ES256-signed RFC 9068 JWT access token "
        "(900 s), one server process on one core.",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {v['cpu']}, {platform.machine()}, nproc={os.cpu_count()}, "
        f"{platform.platform()}; load average {loads[0]:.2f} at start, {loads[1]:.2f} at end "
        "(the machine is shared: compare the ratio, not the absolute numbers)",
        f"- bastion {v['bastion']} (its native front, Python {v['python']}, SQLite, "
        f"in-process shared state); oidc-provider {v['oidc-provider']} on Node {v['node']} "
        "(in-memory adapter)",
        f"- load: {v['wrk']}, 1 thread, {args.connections} keep-alive connections, "
        f"{args.duration} s measured after a {args.warmup} s warm-up, a Lua script for the POST "
        "(Basic auth header, form body); server pinned to core 0, wrk to core 1 (`taskset`)",
        f"- rounds: {args.rounds}; in each round every transport runs bastion and oidc-provider "
        "back to back, the order alternating per round; each case is a fresh server process "
        "whose first response is checked against the contract before the warm-up",
        "- reproduce: `.venv/bin/python bench/oauth/run.py` (smoke run: `--quick`)",
        "",
        "| server | transport | requests/s (median) | p50 ms | p99 ms | server CPU | errors "
        "| requests/s per round |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for (server, transport), case in cases.items():
        if not case.samples:
            continue
        runs = " / ".join(f"{s.rps:,.0f}" for s in case.samples)
        lines.append(
            f"| {server} | {transport} | {case.median('rps'):,.0f} | {case.median('p50_ms'):.2f} "
            f"| {case.median('p99_ms'):.2f} | {case.median('cpu') * 100:.0f}% "
            f"| {sum(s.errors for s in case.samples)} | {runs} |"
        )
    lines += ["", "## Ratio bastion / oidc-provider (requests/s)", ""]
    for transport in args.transports:
        if not (
            cases[("bastion", transport)].samples and cases[("oidc-provider", transport)].samples
        ):
            lines.append(f"- {transport}: not measured (both servers are needed for a ratio)")
            continue
        ratio, per_round = _ratio(cases, transport)
        rounds = " / ".join(f"{r:.2f}" for r in per_round)
        lines.append(f"- **{transport}: {ratio:.2f}x** (ratio of the medians; per round: {rounds})")
    lines += [
        "",
        "## Equivalence",
        "",
        "Both servers get the same request (`POST` to the `token_endpoint` of their discovery "
        f"document, body `{BODY}`, `Authorization: Basic`) and must answer 200 with an ES256 "
        f"`at+jwt` access token for the client, scope `{SCOPE}`, an audience and a {TTL} s "
        "lifetime — checked on each case's first response. What the checked tokens looked like:",
        "",
    ]
    for server in SERVERS:
        for transport in args.transports:
            if (server, transport) in cases and cases[(server, transport)].samples:
                lines.append(
                    f"- {server} ({transport}): {_describe(cases[(server, transport)].check)}"
                )
                break
    lines += [
        "",
        "Configuration: oidc-provider (`bench/oauth/oidc_provider_peer.mjs`) has one static "
        "client (`client_secret_basic`, grant `client_credentials`, scope `read`), the "
        "`clientCredentials` and `resourceIndicators` features with a default resource whose "
        "access tokens are `jwt` format signed ES256, `ttl.ClientCredentials` 900, a fresh "
        "P-256 key per run, `NODE_ENV=production`. bastion runs `bastion serve` on a temp "
        "config (SQLite, in-process shared state, `signing_keys.algorithm: ES256`, "
        "`tokens.access_token_ttl: 900`, logging at warning, no access log) with a client "
        f"made by `{create_command}`. Plain HTTP runs bastion with `tls: off` + `trusted_proxies: "
        "[127.0.0.1]`; HTTPS runs both with the same self-signed ECDSA P-256 certificate "
        "(bastion: its native front, rustls; node: OpenSSL).",
        "",
        "Known differences:",
        "",
        "- Client lookup: oidc-provider's client is static configuration, compared with a "
        "plaintext secret held in memory; bastion stores clients and SHA-256 secret digests "
        "in its database and reads them on the token path (the deployment each is built "
        "for, but not the same work — see Discussion).",
        "- Persistence: a JWT-format access token is not stored by oidc-provider (its "
        "`save()` only emits `issued`), and it keeps no audit log; anything bastion writes "
        "per issued token (audit event) is work the peer does not do.",
        "- Token size: bastion's `kid` (a 43-character JWK thumbprint) and issuer differ in "
        "length from the peer's; the tokens differ by a few dozen bytes.",
        '- oidc-provider 9.x prints "Unsupported runtime. Use Node.js v22.x LTS" on Node 20 '
        "(a check of the LTS code name only); it runs and passes the contract check.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# main


def _ensure_node_modules() -> None:
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return
    print("installing the node peer (npm ci)…", flush=True)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 3 s, 1 s warm-up; prints only"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per case")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds per case")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--transports", default="http,https", help="comma-separated: http, https (default both)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated: bastion, oidc-provider (default both; a ratio needs both)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="report path (default RESULTS.md; none for --quick)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3, 1
    elif args.output is None:
        args.output = HERE / "RESULTS.md"
    args.transports = [t for t in args.transports.split(",") if t]
    servers = [s for s in args.servers.split(",") if s]
    if bad := set(args.transports) - set(TRANSPORTS) or set(servers) - set(SERVERS):
        sys.exit(f"unknown transport or server: {', '.join(sorted(bad))}")

    need("wrk", "install it with `apt-get install -y wrk` (Debian/Ubuntu)")
    need("taskset", "install util-linux")
    need("node", "install Node.js 20 or newer")
    if (os.cpu_count() or 1) < 2:
        sys.exit("this benchmark pins the server and wrk to two different cores: needs 2+ CPUs")
    _ensure_node_modules()

    sys.path.insert(0, str(ROOT / "src"))
    from bastion.crypto import ensure_dev_certificate

    load_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-oauth-"))
    keep = args.keep
    try:
        cert = ensure_dev_certificate(workdir / "tls", hosts=("127.0.0.1", "localhost"))
        peers: dict[str, Callable[[], Server]] = {
            "oidc-provider": lambda: OidcProvider(cert),
            "bastion": lambda: Bastion(workdir, cert),
        }
        started = {name: peers[name]() for name in SERVERS if name in servers}
        cases = {
            (server, transport): Case(server, transport)
            for transport in args.transports
            for server in SERVERS
        }
        for round_ in range(1, args.rounds + 1):
            for transport in args.transports:
                order = [s for s in SERVERS if s in started]
                if round_ % 2 == 0:
                    order.reverse()
                for name in order:
                    case = cases[(name, transport)]
                    sample = _run_case(started[name], case, workdir, args)
                    case.samples.append(sample)
                    print(
                        f"round {round_}: {name:13} {transport:5} {sample.rps:9,.0f} req/s  "
                        f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms  "
                        f"cpu {sample.cpu * 100:3.0f}%  errors {sample.errors}",
                        flush=True,
                    )
    except BenchError as exc:
        keep = True  # the configs and server logs explain the failure
        sys.exit(f"benchmark failed: {exc}\n(configs and logs: {workdir})")
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    bastion = started.get("bastion")
    create_command = bastion.create_command if isinstance(bastion, Bastion) else "(not run)"
    report = _report(cases, args, (load_start, os.getloadavg()[0]), create_command)
    for transport in args.transports:
        if cases[("bastion", transport)].samples and cases[("oidc-provider", transport)].samples:
            ratio, _ = _ratio(cases, transport)
            print(f"ratio bastion / oidc-provider ({transport}): {ratio:.2f}")
    if args.output is None:
        return
    # Keep a hand-written discussion (below this marker) across re-runs.
    write_report(args.output, report, "## Discussion")


if __name__ == "__main__":
    main()
