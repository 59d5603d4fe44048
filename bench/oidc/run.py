"""Benchmark the authorization-code round trip: bastion vs node ``oidc-provider``.

Usage (from the repository root)::

    .venv/bin/python bench/oidc/run.py            # 3 interleaved rounds, 10 s each; RESULTS.md
    .venv/bin/python bench/oidc/run.py --quick    # smoke run: 1 round, 3 s, prints only

What is measured: one **round trip** is what a relying party's back end and a signed-in browser
cost a provider per sign-in once the user has a session and has consented: ``GET`` the
authorization endpoint with the session cookie (``response_type=code``, ``scope=openid``,
``state``, ``nonce``, a PKCE S256 challenge) → a 303 to the redirect URI with ``code`` → ``POST``
the token endpoint (``grant_type=authorization_code``, the code, the verifier, the redirect URI;
``client_secret_basic``) → 200 with an access token and an ES256 ID token. Both servers are
configured alike (RESULTS.md, "Equivalence"); each case first does one round trip and checks its
ID token (alg, ``iss``, ``aud``, ``nonce``, ``at_hash``) before measuring.

Before each case the harness establishes the session and the consent once, over HTTP: on bastion
the real login form and consent form (each with its CSRF token); on oidc-provider its interaction
(``bench/oidc/oidc_provider_peer.mjs`` finishes it with the Grant API). Only the session cookie is
sent afterwards.

Method (bench/oauth's): each case starts a fresh server pinned to core 0 (``taskset -c 0``) and
drives it from ``load.py`` pinned to core 1 (an asyncio client: wrk's Lua cannot time a round trip
of two requests per connection), 32 keep-alive connections, for the measured window after a
warm-up. Cases are interleaved (the order alternating per round); medians and the ratio
bastion / oidc-provider are reported, with the load generator's own CPU share (is it the
bottleneck?). Plain HTTP only: bench/oauth showed TLS on keep-alive connections changes nothing
measurable for either server.

Needs ``taskset`` (util-linux), Node 20+ and ``npm ci`` in bench/oauth (whose node_modules this
benchmark shares; the harness runs it when missing).
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import hashlib
import http.client
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
sys.path.insert(0, str(BENCH))
from benchlib import Credentials, cpu_seconds, free_port, need, write_report  # noqa: E402


def _load_oauth() -> Any:
    # The token benchmark's helpers (process start/stop, readiness, CPU time, JWT segments),
    # loaded by path: both scripts are named run.py.
    spec = importlib.util.spec_from_file_location("bench_oauth_run", BENCH / "oauth" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


oauth = _load_oauth()
BenchError = oauth.BenchError

ROOT = BENCH.parent
BASTION = Path(sys.executable).with_name("bastion")
PEER_SCRIPT = HERE / "oidc_provider_peer.mjs"
NODE_MODULES = BENCH / "oauth" / "node_modules"
LOAD = HERE / "load.py"

SERVERS = ("bastion", "oidc-provider")
CLIENT_NAME = "bench-rp"
USERNAME = "bench-user"
PASSWORD = "orbit violet staple 42 bench"
REDIRECT_URI = "https://rp.bench.example/cb"
STATE = "bench-state-0123456789"
NONCE = "bench-nonce-0123456789"
VERIFIER = "bench-verifier-" + "v" * 43
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


@dataclass
class Sample:
    rps: float  # round trips per second
    p50_ms: float
    p99_ms: float
    errors: int
    cpu: float  # server CPU seconds per wall second (1.0 = one core)
    client_cpu: float  # the load generator's CPU seconds per wall second
    core1: float  # core 1's busy share over the window (the load generator and anything else)


@dataclass
class RoundTripCheck:
    header: dict[str, Any]
    claims: dict[str, Any]
    at_hash: str  # "verified" / "absent"
    access_token: str  # "JWT <typ>" or "opaque"
    authorize_path: str
    token_path: str


@dataclass
class Case:
    server: str
    samples: list[Sample] = field(default_factory=list)
    check: RoundTripCheck | None = None

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(s, attr) for s in self.samples))


# ---------------------------------------------------------------------------
# HTTP without redirects, with a cookie jar


class Browser:
    """Just enough of a browser: no redirects followed, cookies kept by name (any path)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookies: dict[str, str] = {}

    def cookie_header(self, only: Callable[[str], bool] = lambda name: True) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items() if only(k))

    def request(
        self,
        method: str,
        target: str,
        *,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = self.cookie_header()
        body = None
        if form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    self._remember(value)
            return response.status, {k.lower(): v for k, v in response.getheaders()}, raw
        finally:
            connection.close()

    def _remember(self, header: str) -> None:
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            if not morsel.value or morsel["max-age"] in ("0", "-1"):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def _authorize_path(endpoint: str, client_id: str) -> str:
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": STATE,
            "nonce": NONCE,
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        }
    )
    return f"{urlsplit(endpoint).path}?{query}"


# ---------------------------------------------------------------------------
# the two servers


class Server:
    """One side: how to start it, and how a signed-in, consented session is made."""

    name: str
    credentials: Credentials

    def command(self, port: int) -> tuple[list[str], dict[str, str], str]:
        """Return ``(argv, env, base_url)`` to start the server (argv without taskset)."""
        raise NotImplementedError

    def ready_path(self) -> str:
        return "/.well-known/openid-configuration"

    def sign_in(self, browser: Browser, authorize: str) -> str:
        """Drive the login and consent once; return the first redirect's ``Location``."""
        raise NotImplementedError


class OidcProvider(Server):
    name = "oidc-provider"

    def __init__(self) -> None:
        self.credentials = Credentials(CLIENT_NAME, secrets.token_urlsafe(32))

    def command(self, port: int) -> tuple[list[str], dict[str, str], str]:
        env = dict(
            os.environ,
            NODE_ENV="production",
            PEER_PORT=str(port),
            PEER_CLIENT_ID=self.credentials.client_id,
            PEER_CLIENT_SECRET=self.credentials.client_secret,
            PEER_REDIRECT_URI=REDIRECT_URI,
            PEER_ACCOUNT=USERNAME,
        )
        # ESM imports ignore NODE_PATH: run a copy inside bench/oauth's node_modules (git-ignored),
        # from where `oidc-provider` resolves.
        script = NODE_MODULES / ".bench-oidc-peer.mjs"
        shutil.copyfile(PEER_SCRIPT, script)
        return ["node", str(script)], env, f"http://127.0.0.1:{port}"

    def sign_in(self, browser: Browser, authorize: str) -> str:
        status, headers, raw = browser.request("GET", authorize)
        location = headers.get("location", "")
        if status != 303 or "/interaction/" not in location:
            raise BenchError(
                f"oidc-provider: authorize without a session answered {status}: {raw[:300]!r}"
            )
        for _ in range(3):  # /interaction/<uid> → /auth/<uid> → the redirect URI
            status, headers, raw = browser.request("GET", location)
            location = headers.get("location", "")
            if status not in (302, 303) or not location:
                raise BenchError(f"oidc-provider: interaction answered {status}: {raw[:300]!r}")
            if location.startswith(REDIRECT_URI):
                return location
        raise BenchError(
            f"oidc-provider: the interaction did not end at the redirect URI: {location}"
        )


class Bastion(Server):
    name = "bastion"

    def __init__(self, workdir: Path, storage: str | None) -> None:
        self.workdir = workdir
        self.storage = storage
        self.data_dir = workdir / "data"
        self.config = workdir / "bastion.yaml"
        self._write_config(free_port())
        self._cli("migrate")  # SQLite would on first start; an empty PostgreSQL would not
        self._cli("users", "create", USERNAME, "--password-stdin", stdin=PASSWORD)
        created = self._cli(
            "clients", "create", CLIENT_NAME, "--grant", "authorization_code",
            "--redirect-uri", REDIRECT_URI, "--scope", "openid", "--json",
        )  # fmt: skip
        self.create_command = (
            f"bastion clients create {CLIENT_NAME} --grant authorization_code "
            f"--redirect-uri {REDIRECT_URI} --scope openid --json"
        )
        self.credentials = Credentials(created["client_id"], created["client_secret"])

    def _write_config(self, port: int) -> None:
        self.config.write_text(
            f"data_dir: {self.data_dir}\n"
            f"listen:\n  host: 127.0.0.1\n  port: {port}\n"
            "tls: off\n"
            "trusted_proxies: [127.0.0.1]\n"
            f"storage: {self.storage or 'sqlite:///' + str(self.data_dir / 'bastion.db')}\n"
            "shared: memory://\n"
            "logging:\n  level: warning\n"
            "server:\n  access_log: false\n"
            "signing_keys:\n  algorithm: ES256\n"
            "tokens:\n  access_token_ttl: 900\n  authorization_code_ttl: 60s\n  id_token_ttl: 5m\n"
            # The bench only: one login from one IP, then thousands of client authentications.
            "ratelimit:\n  login:\n    enabled: false\n"
        )

    def _cli(self, *args: str, stdin: str | None = None) -> Any:
        argv = [str(BASTION), *args, "-c", str(self.config)]
        if "--json" not in args:
            argv.append("--json")
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, text=True, input=stdin)
        if done.returncode != 0:
            raise BenchError(f"`bastion {' '.join(args)}` failed: {done.stdout}{done.stderr}")
        return json.loads(done.stdout)

    def command(self, port: int) -> tuple[list[str], dict[str, str], str]:
        self._write_config(port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        return [str(BASTION), "serve", "-c", str(self.config)], env, f"http://127.0.0.1:{port}"

    def ready_path(self) -> str:
        return "/readyz"

    def sign_in(self, browser: Browser, authorize: str) -> str:
        csrf = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
        request_id = re.compile(r'name="request" value="([A-Za-z0-9_-]+)"')

        def found(pattern: re.Pattern[str], raw: bytes) -> str:
            match = pattern.search(raw.decode(errors="replace"))
            if match is None:
                raise BenchError(f"bastion: no {pattern.pattern!r} in the page: {raw[:300]!r}")
            return match.group(1)

        status, headers, raw = browser.request("GET", authorize)
        login = headers.get("location", "")
        if status != 303 or "/login" not in login:
            raise BenchError(
                f"bastion: authorize without a session answered {status}: {raw[:300]!r}"
            )
        _, _, page = browser.request("GET", login)
        form = {
            "csrf_token": found(csrf, page),
            "username": USERNAME,
            "password": PASSWORD,
            "return_to": _query(login)["return_to"],
        }
        status, headers, raw = browser.request("POST", "/login", form=form)
        if status != 303:
            raise BenchError(f"bastion: POST /login answered {status}: {raw[:300]!r}")
        status, headers, raw = browser.request("GET", headers["location"])
        if status == 303 and headers.get("location", "").startswith(REDIRECT_URI):
            return headers["location"]  # a later case: the consent is remembered in the database
        if status != 303 or "/consent" not in headers.get("location", ""):
            raise BenchError(f"bastion: the continued request answered {status}: {raw[:300]!r}")
        _, _, page = browser.request("GET", headers["location"])
        form = {
            "csrf_token": found(csrf, page),
            "request": found(request_id, page),
            "decision": "allow",
        }
        status, headers, raw = browser.request("POST", "/consent", form=form)
        if status != 303:
            raise BenchError(f"bastion: POST /consent answered {status}: {raw[:300]!r}")
        return headers["location"]


# ---------------------------------------------------------------------------
# one case: start, sign in, check one round trip, measure


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def _round_trip(
    server: Server, browser: Browser, authorize: str, token_path: str, issuer: str
) -> RoundTripCheck:
    """One measured-style round trip with the session cookie, checked against the contract.

    Raises:
        BenchError: the authorize request did not answer 303 with ``code``, ``state`` and ``iss``,
            or the token response lacks tokens, or the ID token is not ES256 with this ``iss``,
            ``aud`` = the client, this ``nonce`` and (when present) a correct ``at_hash``.
    """
    status, headers, raw = browser.request("GET", authorize)
    params = _query(headers.get("location", ""))
    problems = []
    if status != 303 or "code" not in params:
        raise BenchError(f"{server.name}: signed-in authorize answered {status}: {raw[:300]!r}")
    if params.get("state") != STATE:
        problems.append(f"state {params.get('state')!r}")
    if params.get("iss") != issuer:
        problems.append(f"iss in the redirect {params.get('iss')!r}")
    status, headers, raw = browser.request(
        "POST",
        token_path,
        form={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        },
        headers={"Authorization": server.credentials.basic()},
    )
    if status != 200:
        raise BenchError(f"{server.name}: token endpoint answered {status}: {raw[:500]!r}")
    response = json.loads(raw)
    access, id_token = str(response.get("access_token", "")), str(response.get("id_token", ""))
    parts = id_token.split(".")
    if not access or len(parts) != 3:
        raise BenchError(f"{server.name}: no access token or no JWS ID token: {response!r}")
    header, claims = oauth._b64json(parts[0]), oauth._b64json(parts[1])
    if header.get("alg") != "ES256":
        problems.append(f"alg {header.get('alg')!r}")
    if claims.get("iss") != issuer:
        problems.append(f"iss {claims.get('iss')!r}")
    aud = claims.get("aud")
    if aud != server.credentials.client_id and aud != [server.credentials.client_id]:
        problems.append(f"aud {aud!r}")
    if claims.get("nonce") != NONCE:
        problems.append(f"nonce {claims.get('nonce')!r}")
    if "at_hash" in claims and claims["at_hash"] != _at_hash(access):
        problems.append("at_hash does not match the access token")
    if server.name == "bastion" and "at_hash" not in claims:
        problems.append("no at_hash")
    if str(response.get("token_type", "")).lower() != "bearer":
        problems.append(f"token_type {response.get('token_type')!r}")
    if problems:
        raise BenchError(f"{server.name}: round trip does not match the contract: {problems}")
    access_parts = access.split(".")
    kind = (
        f"JWT (typ {oauth._b64json(access_parts[0]).get('typ')!r})"
        if len(access_parts) == 3
        else f"opaque ({len(access)} characters)"
    )
    return RoundTripCheck(
        header, claims, "verified" if "at_hash" in claims else "absent", kind,
        urlsplit(authorize).path, token_path,
    )  # fmt: skip


def _core1_busy() -> tuple[int, int]:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu1 "):
            ticks = [int(x) for x in line.split()[1:]]
            idle = ticks[3] + ticks[4]
            return sum(ticks) - idle, sum(ticks)
    return 0, 1


def _py_spy(pid: int, seconds: int, output: Path) -> subprocess.Popen[bytes] | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        print("py-spy not found: no profile", flush=True)
        return None
    argv = [found, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    argv += ["--duration", str(seconds), "--output", str(output), "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _print_profile(raw: Path, limit: int = 25) -> None:
    """Print the top functions of py-spy's collapsed stacks: own time, then inclusive time."""
    if not raw.exists():
        print("py-spy wrote no profile", flush=True)
        return
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r"\s*\(.*?/(site-packages|src)/", " (", f) for f in stack.split(";")]
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
        total += int(count)
    for title, counter in (("own", own), ("inclusive", inclusive)):
        print(f"profile ({title} time, {total} samples):")
        for frame, n in counter.most_common(limit):
            print(f"  {100.0 * n / total:5.1f}%  {frame}")


def _run_case(server: Server, case: Case, workdir: Path, args: argparse.Namespace) -> Sample:
    port = free_port()
    argv, env, base_url = server.command(port)
    log = workdir / f"{server.name}.log"
    with oauth._process(["taskset", "-c", "0", *argv], env, log, workdir) as proc:
        oauth._wait_ready(base_url + server.ready_path(), proc, log)
        browser = Browser(base_url)
        status, _, raw = browser.request("GET", "/.well-known/openid-configuration")
        if status != 200:
            raise BenchError(f"{server.name}: discovery answered {status}: {raw[:300]!r}")
        document = json.loads(raw)
        issuer = document["issuer"]
        authorize = _authorize_path(
            document["authorization_endpoint"], server.credentials.client_id
        )
        token_path = urlsplit(document["token_endpoint"]).path
        first = server.sign_in(browser, authorize)
        if not _query(first).get("code"):
            raise BenchError(f"{server.name}: the sign-in did not end with a code: {first}")
        case.check = case.check or _round_trip(server, browser, authorize, token_path, issuer)
        spec = {
            "host": "127.0.0.1",
            "port": str(port),
            "authorize": authorize,
            "token": token_path,
            "cookie": browser.cookie_header(lambda name: "session" in name),
            "basic": server.credentials.basic(),
            "redirect_uri_q": quote(REDIRECT_URI, safe=""),
            "verifier": VERIFIER,
            "connections": str(args.connections),
            "warmup": str(args.warmup),
            "duration": str(args.duration),
        }
        spec_file = workdir / f"{server.name}-load.json"
        spec_file.write_text(json.dumps(spec))
        load = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, str(LOAD), str(spec_file)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert load.stdout is not None
        result: dict[str, Any] = {}
        spy: subprocess.Popen[bytes] | None = None
        cpu_before = started = 0.0
        core_before = (0, 1)
        for line in load.stdout:
            event = json.loads(line)
            if event["event"] == "measuring":
                cpu_before, started = cpu_seconds(proc.pid), time.monotonic()
                core_before = _core1_busy()
                if args.profile and isinstance(server, Bastion):
                    spy = _py_spy(proc.pid, args.duration, workdir / "profile.txt")
            elif event["event"] == "result":
                cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.monotonic() - started)
                core_after = _core1_busy()
                result = event
        if load.wait() != 0 or not result:
            raise BenchError(f"{server.name}: the load generator failed (exit {load.returncode})")
        if spy is not None:
            spy.wait(timeout=60)
            _print_profile(workdir / "profile.txt")
    if result["examples"]:
        print(f"  {server.name} errors, e.g.: {result['examples'][:2]}", flush=True)
    core1 = (core_after[0] - core_before[0]) / max(1, core_after[1] - core_before[1])
    return Sample(
        result["rps"], result["p50_ms"], result["p99_ms"], result["errors"], cpu,
        result["client_cpu"], core1,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# report


def _ratio(cases: dict[str, Case]) -> tuple[float, list[float]]:
    ours, peer = cases["bastion"], cases["oidc-provider"]
    per_round = [a.rps / b.rps for a, b in zip(ours.samples, peer.samples, strict=True) if b.rps]
    return ours.median("rps") / peer.median("rps"), per_round


def _describe(check: RoundTripCheck | None) -> str:
    if check is None:
        return "(not measured)"
    return (
        f"`GET {check.authorize_path}` → 303 → `POST {check.token_path}`; ID token header "
        f"`{json.dumps(check.header, sort_keys=True)}`, claims {', '.join(sorted(check.claims))}; "
        f"at_hash {check.at_hash}; access token {check.access_token}"
    )


def _report(
    cases: dict[str, Case], args: argparse.Namespace, loads: tuple[float, float], create: str
) -> str:
    v = oauth._versions()
    storage = "SQLite" if args.storage is None else "PostgreSQL (not pinned)"
    lines = [
        "# OpenID Connect authorization-code round trip: bastion vs node oidc-provider",
        "",
        "One round trip = `GET` authorize with a session cookie and a remembered consent → 303 "
        "with `code` → `POST` token (`client_secret_basic`, PKCE S256 verifier) → 200 with an "
        "access token and an ES256 ID token; one server process on one core.",
        "",
        f"- date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {v['cpu']}, {platform.machine()}, nproc={os.cpu_count()}, "
        f"{platform.platform()}; load average {loads[0]:.2f} at start, {loads[1]:.2f} at end "
        "(the machine is shared: compare the ratio, not the absolute numbers)",
        f"- bastion {v['bastion']} (its native front, Python {v['python']}, {storage}, "
        f"in-process shared state); oidc-provider {v['oidc-provider']} on Node {v['node']} "
        "(in-memory adapter)",
        f"- load: `bench/oidc/load.py` (asyncio on uvloop, plain HTTP/1.1), {args.connections} "
        f"keep-alive connections each doing round trips in sequence, {args.duration} s measured "
        f"after a {args.warmup} s warm-up; server pinned to core 0, load generator to core 1 "
        "(`taskset`)",
        f"- rounds: {args.rounds}; bastion and oidc-provider back to back, the order alternating "
        "per round; each case is a fresh server process, signed in once and checked against the "
        "contract before the warm-up",
        "- reproduce: `.venv/bin/python bench/oidc/run.py` (smoke run: `--quick`)",
        "",
        "| server | round trips/s (median) | p50 ms | p99 ms | server CPU | load generator CPU "
        "| core 1 busy | errors | round trips/s per round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, case in cases.items():
        if not case.samples:
            continue
        runs = " / ".join(f"{s.rps:,.0f}" for s in case.samples)
        lines.append(
            f"| {name} | {case.median('rps'):,.0f} | {case.median('p50_ms'):.2f} "
            f"| {case.median('p99_ms'):.2f} | {case.median('cpu') * 100:.0f}% "
            f"| {case.median('client_cpu') * 100:.0f}% | {case.median('core1') * 100:.0f}% "
            f"| {sum(s.errors for s in case.samples)} | {runs} |"
        )
    lines += ["", "## Ratio bastion / oidc-provider (round trips/s)", ""]
    if cases["bastion"].samples and cases["oidc-provider"].samples:
        ratio, per_round = _ratio(cases)
        rounds = " / ".join(f"{r:.2f}" for r in per_round)
        lines.append(f"- **{ratio:.2f}x** (ratio of the medians; per round: {rounds})")
    else:
        lines.append("- not measured (both servers are needed for a ratio)")
    lines += [
        "",
        "## Equivalence",
        "",
        "Both servers get the same requests: `GET` the discovery document's "
        "`authorization_endpoint` with `response_type=code`, `scope=openid`, `state`, `nonce`, "
        "`code_challenge` (S256) and the redirect URI `" + REDIRECT_URI + "`, carrying only the "
        "session cookie; then `POST` its `token_endpoint` with `grant_type=authorization_code`, "
        "the code, the redirect URI and the verifier, `Authorization: Basic`. Contract, checked "
        "on each case's first round trip: the authorize answer is a 303 to the redirect URI with "
        "`code`, the same `state` and `iss` (RFC 9207); the token answer is 200 with "
        "`token_type` Bearer, an access token and an ID token signed ES256 whose `iss` is the "
        "discovery issuer, `aud` the client, `nonce` the request's and `at_hash` (when present) "
        "the access token's. The load generator counts a round trip only when the authorize "
        "answer is a 303 with a `code` and the token answer a 200 with an `id_token`; anything "
        "else is an error. What the checked round trips looked like:",
        "",
    ]
    for name in SERVERS:
        if cases[name].samples:
            lines.append(f"- {name}: {_describe(cases[name].check)}")
    lines += [
        "",
        "Configuration: oidc-provider (`bench/oidc/oidc_provider_peer.mjs`) has one static client "
        "(`client_secret_basic`, grant `authorization_code`, the redirect URI, scope `openid`, "
        "`id_token_signed_response_alg: ES256`), `pkce.required` always, ttl AuthorizationCode "
        "60 s, IdToken 300 s, AccessToken 900 s, a fresh P-256 key per run, `NODE_ENV=production`, "
        "its default in-memory adapter; its login and consent are one interaction finished by "
        "the Grant API and `provider.interactionFinished` (no pages). bastion runs `bastion "
        "serve` on a temp config (`tls: off` + `trusted_proxies: [127.0.0.1]`, SQLite, "
        "in-process shared state, `signing_keys.algorithm: ES256`, access tokens 900 s, codes "
        "60 s, ID tokens 5 min, logging at warning, no access log, and — for the bench only — "
        "`ratelimit.login.enabled: false`), with a user made by `bastion users create "
        f"{USERNAME} --password-stdin`, a client made by `{create}`, and a session and consent "
        "made by posting its real login and consent forms (CSRF tokens included) once.",
        "",
        "Known differences:",
        "",
        "- Storage: oidc-provider keeps sessions, grants, codes and (opaque) access tokens in its "
        "in-memory adapter; bastion keeps sessions, consents and codes in shared state / SQLite "
        "and writes audit events (`oauth.authorize`, token issuance) per round trip.",
        "- `at_hash`: bastion's ID token has it; oidc-provider puts `at_hash` only in ID tokens "
        "issued at the authorization endpoint (hybrid flows), not at the token endpoint (OIDC "
        "Core 3.1.3.6 makes it optional there), so the contract checks it where present.",
        "- Access token: bastion's is an ES256 JWT (RFC 9068), oidc-provider's an opaque token "
        "stored in memory (without a resource indicator it issues opaque tokens for userinfo): "
        "bastion signs twice per round trip, the peer once.",
        '- oidc-provider 9.x prints "Unsupported runtime. Use Node.js v22.x LTS" on Node 20 (a '
        "check of the LTS code name only); it runs and passes the contract check.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# main


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
    parser.add_argument(
        "--storage",
        default=None,
        help="bastion's database URL (default: SQLite in the temp dir), e.g. an empty "
        "postgresql://… database: it is migrated and written to",
    )
    parser.add_argument(
        "--profile", action="store_true", help="py-spy bastion's measured windows (prints the top)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 3, 1
    elif args.output is None:
        args.output = HERE / "RESULTS.md"
    servers = [s for s in args.servers.split(",") if s]
    if bad := set(servers) - set(SERVERS):
        sys.exit(f"unknown server: {', '.join(sorted(bad))}")

    need("taskset", "install util-linux")
    need("node", "install Node.js 20 or newer")
    if (os.cpu_count() or 1) < 2:
        sys.exit(
            "this benchmark pins the server and the load to two different cores: needs 2+ CPUs"
        )
    oauth._ensure_node_modules()

    load_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bastion-bench-oidc-"))
    keep = args.keep
    try:
        peers: dict[str, Callable[[], Server]] = {
            "oidc-provider": OidcProvider,
            "bastion": lambda: Bastion(workdir, args.storage),
        }
        started = {name: peers[name]() for name in SERVERS if name in servers}
        cases = {name: Case(name) for name in SERVERS}
        for round_ in range(1, args.rounds + 1):
            order = list(started)
            if round_ % 2 == 0:
                order.reverse()
            for name in order:
                sample = _run_case(started[name], cases[name], workdir, args)
                cases[name].samples.append(sample)
                print(
                    f"round {round_}: {name:13} {sample.rps:8,.0f} round trips/s  "
                    f"p50 {sample.p50_ms:6.2f} ms  p99 {sample.p99_ms:6.2f} ms  "
                    f"server cpu {sample.cpu * 100:3.0f}%  "
                    f"load cpu {sample.client_cpu * 100:3.0f}%  "
                    f"core1 {sample.core1 * 100:3.0f}%  errors {sample.errors}",
                    flush=True,
                )
    except BenchError as exc:
        keep = True
        sys.exit(f"benchmark failed: {exc}\n(configs and logs: {workdir})")
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    bastion = started.get("bastion")
    create = bastion.create_command if isinstance(bastion, Bastion) else "(not run)"
    if cases["bastion"].samples and cases["oidc-provider"].samples:
        print(f"ratio bastion / oidc-provider: {_ratio(cases)[0]:.2f}")
    if args.output is None:
        return
    report = _report(cases, args, (load_start, os.getloadavg()[0]), create)
    write_report(args.output, report, "## Notes")


if __name__ == "__main__":
    main()
