"""End to end (issue 13): examples/caddy/Caddyfile against Debian's real Caddy.

Caddy (admin endpoint off, its data and config dirs in a tmp dir, a free port) runs the
example with its placeholders filled in: ``forward_auth`` asks a real ``bastion serve``
(``tls: off``, ``trusted_proxies: [127.0.0.1]``, ``forward_auth.headers: forwarded``) and
proxies to an echo upstream. Asserted, besides the ordinary allow / 401 / 403:

- Caddy sets only ``X-Forwarded-Method`` / ``-Uri`` and passes every other client header
  through: a client-sent ``X-Original-URI: /public/…`` or ``X-Original-Method: GET`` no
  longer turns a 401 / 403 into a 200 — bastion answers 400 ``forward_auth_ambiguous``,
  which Caddy returns to the client;
- a spoofed ``X-Bastion-*`` header never reaches the upstream.

caddy missing: skipped outside CI, a failure under CI=true (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread, free_port, run_cli
from _support.native import feed_changes, plane, until_feed_past

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "caddy" / "Caddyfile"
CADDY = shutil.which("caddy")

#: /metrics is not open to a trusted proxy's address (127.0.0.1 here): a token opens it.
METRICS_TOKEN = "forward-auth-metrics-token"


def _need_caddy() -> str:
    if CADDY is None:
        if os.environ.get("CI") == "true":
            pytest.fail("caddy is not installed (.ci/run installs it)")
        pytest.skip("caddy is not installed (apt-get install caddy)")
    return CADDY


class Stack:
    def __init__(self, tmp: Path, echo: EchoThread) -> None:
        self.tmp = tmp
        self.echo = echo.server
        self.config = tmp / "bastion.yaml"
        self.config.write_text(
            f"storage: sqlite:///{tmp}/bastion.db\n"
            f"data_dir: {tmp}/data\n"
            "tls: off\n"
            "trusted_proxies: [127.0.0.1]\n"
            f"metrics: {{token: {METRICS_TOKEN}}}\n"
            "forward_auth: {headers: forwarded}\n"
            "routes:\n"
            "  - name: orders\n"
            "    match: {path: /api/orders}\n"
            f"    upstream: {self.echo.url}\n"
            "    auth: [api_key]\n"
            "    scopes: {GET: [orders:read], '*': [orders:write]}\n"
            "  - name: public\n"
            "    match: {path: /public}\n"
            f"    upstream: {self.echo.url}\n"
            "    public: true\n"
        )
        self.bastion = BastionProcess("-c", str(self.config), cwd=tmp)
        self.port = free_port()
        self.caddy: subprocess.Popen[bytes] | None = None
        self.log = tmp / "caddy.log"

    def start(self, caddy: str) -> None:
        self.bastion.start()
        site = (
            EXAMPLE.read_text()
            .replace("${BASTION_ADDR}", f"127.0.0.1:{self.bastion.port}")
            .replace("${UPSTREAM_ADDR}", f"127.0.0.1:{self.echo.port}")
            .replace("${LISTEN}", f"127.0.0.1:{self.port}")
        )
        caddyfile = self.tmp / "Caddyfile"
        caddyfile.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
        env = {
            **os.environ,
            "HOME": str(self.tmp),
            "XDG_DATA_HOME": str(self.tmp / "xdg-data"),
            "XDG_CONFIG_HOME": str(self.tmp / "xdg-config"),
        }
        with self.log.open("wb") as log:
            self.caddy = subprocess.Popen(
                [caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.caddy.poll() is not None:
                raise AssertionError(f"caddy exited: {self.log.read_text(errors='replace')}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("caddy did not start listening")

    def stop(self) -> None:
        if self.caddy is not None and self.caddy.poll() is None:
            self.caddy.terminate()
            try:
                self.caddy.wait(10)
            except subprocess.TimeoutExpired:
                self.caddy.kill()
                self.caddy.wait()
        self.bastion.stop()

    def key(self, *scopes: str) -> tuple[str, str]:
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        result = run_cli(
            "keys", "create", "k", *args, "-c", str(self.config), "--json", cwd=self.tmp
        )
        assert result.returncode == 0, result.stderr
        doc = orjson.loads(result.stdout)
        return doc["id"], doc["key"]

    def request(self, method: str, path: str, **kw: object) -> httpx.Response:
        return httpx.request(method, f"http://127.0.0.1:{self.port}{path}", timeout=10, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    caddy = _need_caddy()
    echo = EchoThread()
    stack = Stack(tmp_path_factory.mktemp("caddy_forward_auth"), echo)
    try:
        stack.start(caddy)
        yield stack
    finally:
        stack.stop()
        echo.close()


@pytest.fixture(scope="module")
def reader(stack: Stack) -> tuple[str, str]:
    return stack.key("orders:read")


def test_valid_key_reaches_the_upstream_with_identity(
    stack: Stack, reader: tuple[str, str]
) -> None:
    key_id, key = reader
    response = stack.request(
        "GET",
        "/api/orders/7?x=1",
        headers={
            "Authorization": f"Bearer {key}",
            "X-Bastion-Subject": "admin",
            "X-Bastion-Client": "forged",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/api/orders/7"
    seen = stack.echo.received[-1]
    assert seen.header("x-bastion-key-id") == key_id
    assert seen.header("x-bastion-scopes") == "orders:read"
    assert [v for k, v in seen.headers if k.lower() == "x-bastion-subject"] != ["admin"]
    assert seen.header("authorization") is None
    # Not in bastion's answer for a key: the client's copy never passes (Caddy 2.6 sets the
    # unresolved placeholder text instead of leaving the header out).
    assert seen.header("x-bastion-client") in (None, "{http.reverse_proxy.header.X-Bastion-Client}")


def test_public_route_and_missing_key(stack: Stack) -> None:
    assert stack.request("GET", "/public/x").status_code == 200
    before = len(stack.echo.received)
    missing = stack.request("GET", "/api/orders/x")
    assert missing.status_code == 401
    assert missing.json()["reason"] == "unauthenticated"
    assert len(stack.echo.received) == before


def test_client_sent_original_uri_cannot_pick_the_judged_path(stack: Stack) -> None:
    before = len(stack.echo.received)
    response = stack.request("GET", "/api/orders/x", headers={"X-Original-URI": "/public/x"})
    assert response.status_code == 400
    assert response.json()["reason"] == "forward_auth_ambiguous"
    assert len(stack.echo.received) == before


def test_client_sent_original_method_cannot_pick_the_judged_method(
    stack: Stack, reader: tuple[str, str]
) -> None:
    _, key = reader
    before = len(stack.echo.received)
    auth = {"Authorization": f"Bearer {key}"}
    deleting = stack.request("DELETE", "/api/orders/1", headers=auth)
    assert (deleting.status_code, deleting.json()["reason"]) == (403, "insufficient_scope")
    spoofed = stack.request("DELETE", "/api/orders/1", headers={**auth, "X-Original-Method": "GET"})
    assert (spoofed.status_code, spoofed.json()["reason"]) == (400, "forward_auth_ambiguous")
    assert len(stack.echo.received) == before


def test_decisions_behind_caddy_are_native(stack: Stack) -> None:
    # Every decision of a key is the native front's, its first included (a control-plane
    # lookup, then on natively): the request id bastion answered with (copied by Caddy onto
    # the upstream request) carries the plane's prefix, the one of a gateway request served
    # natively with the same key, not Python's (its /healthz).
    before = feed_changes(stack.bastion.url, METRICS_TOKEN)
    _, key = stack.key("orders:read")
    # Its creation (another process) reaches bastion through the change feed, which drops
    # the key's entry: let it land first, or it may drop what the first decision pushed.
    until_feed_past(stack.bastion.url, before, METRICS_TOKEN)
    auth = {"Authorization": f"Bearer {key}"}
    ids = []
    for _ in range(3):
        assert stack.request("GET", "/api/orders/1", headers=auth).status_code == 200
        ids.append(stack.echo.received[-1].header("x-bastion-request-id").rsplit("-", 1)[0])
    direct = httpx.get(f"{stack.bastion.url}/api/orders/1", headers=auth, timeout=10)
    assert direct.status_code == 200
    native = plane(direct)
    python = plane(httpx.get(f"{stack.bastion.url}/healthz", timeout=10))
    assert native != python
    assert ids == [native, native, native]
