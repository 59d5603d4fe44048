"""``session`` routes across nodes: two ``bastion serve`` processes sharing PostgreSQL and Redis.

A session started at node 1 opens the app at node 2 (node 2 looks it up once); its logout at
node 1, and disabling its user with ``bastion users disable`` (another process), end access
at node 2's gateway within a second (the change feed's ``sessions`` and ``users`` channels
reach the native session cache of every node).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, EchoThread, run_cli
from _support.browser_sessions import (
    BROWSER,
    PASSWORD,
    SESSION,
    csrf_token,
    login,
    redirected_within,
)
from _support.nodes import Nodes


@pytest.fixture
def nodes(
    tmp_path: Path, echo: EchoThread, postgres_url: str, redis_url: str, redis_prefix: str
) -> Iterator[Nodes]:
    (tmp_path / "bastion.yaml").write_text(
        "issuer: https://localhost:8443\n"
        f"storage: {postgres_url}\n"
        f"shared: {{url: '{redis_url}', key_prefix: '{redis_prefix}'}}\n"
        "routes:\n"
        "  - name: app\n"
        "    match: {path: /app}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [session]\n"
    )
    cluster = Nodes(tmp_path)
    result = run_cli("migrate", "-c", "bastion.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("alice", "bob"):
        created = run_cli(
            "users",
            "create",
            name,
            "--password-stdin",
            "-c",
            "bastion.yaml",
            stdin=PASSWORD,
            cwd=tmp_path,
        )
        assert created.returncode == 0, created.stderr
    try:
        for index in range(2):
            node = BastionProcess(
                "-c", "bastion.yaml", env={"BASTION_NODE_ID": f"node-{index + 1}"}, cwd=tmp_path
            )
            cluster.nodes.append(node.start())
        yield cluster
    finally:
        cluster.stop()


def _client(node: BastionProcess, session: str | None = None) -> httpx.Client:
    http = httpx.Client(base_url=node.url, verify=False, timeout=30)
    if session is not None:
        http.cookies.set(SESSION, session, domain=http.base_url.host)
    return http


def _login(node: BastionProcess, username: str) -> tuple[httpx.Client, str]:
    http = _client(node)
    assert login(http, username).status_code == 303
    return http, http.cookies[SESSION]


@pytest.mark.timeout(300)
def test_ended_sessions_leave_every_node_within_a_second(nodes: Nodes) -> None:
    first, second = nodes.nodes
    # Logout at node 1 ends access at node 2.
    at_first, session = _login(first, "alice")
    with contextlib.closing(at_first), _client(second, session) as at_second:
        assert at_second.get("/app/", headers=BROWSER).status_code == 200
        assert at_first.get("/app/", headers=BROWSER).status_code == 200
        logout = at_first.post("/logout", data={"csrf_token": csrf_token(at_first, "/logout")})
        assert logout.status_code == 303
        assert redirected_within(at_second, "/app/", 1.0) < 1.0
    # A user disabled by another process: both nodes refuse their session within a second.
    at_first, session = _login(first, "bob")
    with contextlib.closing(at_first), _client(second, session) as at_second:
        assert at_second.get("/app/", headers=BROWSER).status_code == 200
        assert at_first.get("/app/", headers=BROWSER).status_code == 200
        disabled = run_cli("users", "disable", "bob", "-c", "bastion.yaml", cwd=nodes.cwd)
        assert disabled.returncode == 0, disabled.stderr
        assert redirected_within(at_second, "/app/", 1.0) < 1.0
        assert redirected_within(at_first, "/app/", 1.0) < 1.0
