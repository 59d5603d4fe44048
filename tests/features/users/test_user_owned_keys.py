"""API keys owned by a bastion user live only while the user does (issue 16: "disabling a user
ends their sessions, refresh tokens and access").

A real ``bastion serve`` with an ``api_key`` route in front of an echo upstream; the user and the
key are managed with the CLI in other processes, as an operator would, so the server (and its
native core) learns of each change through the change feed:

- a key owned by alice works; ``bastion users disable alice`` → refused (401, as a disabled
  key) within a second, with the key's own record untouched; ``enable`` → works again;
- a key owned by ``owner_type: user`` with an id bastion does not manage is unaffected;
- ``bastion users delete alice`` revokes the keys she owned (``keys show`` says revoked).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread, run_cli

PASSWORD = "violet staple orbit 42"


class Stack:
    def __init__(self, cwd: Path, upstream: str) -> None:
        self.cwd = cwd
        (cwd / "bastion.yaml").write_text(
            "routes:\n"
            "  - name: orders\n"
            "    match: {path: /api/orders}\n"
            f"    upstream: {upstream}\n"
            "    auth: [api_key]\n"
        )
        self.proc = BastionProcess("-c", "bastion.yaml", cwd=cwd)

    def cli(self, *args: str, stdin: str | None = None) -> dict[str, Any]:
        done = run_cli(*args, "-c", "bastion.yaml", "--json", stdin=stdin, cwd=self.cwd)
        assert done.returncode == 0, done.stderr
        return orjson.loads(done.stdout) if done.stdout.strip() else {}

    def status(self, key: str) -> int:
        with httpx.Client(base_url=self.proc.url, verify=False, timeout=10) as http:
            return http.get("/api/orders", headers={"authorization": f"Bearer {key}"}).status_code

    def becomes(self, key: str, status: int, within: float = 1.5) -> float:
        start = time.monotonic()
        while True:
            if self.status(key) == status:
                return time.monotonic() - start
            if time.monotonic() - start > within:
                raise AssertionError(f"still {self.status(key)}, not {status}, after {within} s")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    echo = EchoThread()
    stack = Stack(tmp_path_factory.mktemp("owned-keys"), echo.server.url)
    stack.proc.start()
    try:
        yield stack
    finally:
        stack.proc.stop()
        echo.close()


def _user_and_key(stack: Stack, username: str) -> tuple[str, str, str]:
    user = stack.cli("users", "create", username, "--password-stdin", stdin=PASSWORD)
    created = stack.cli(
        "keys", "create", f"{username}-key", "--owner-type", "user", "--owner-id", user["id"]
    )
    return user["id"], created["key"], created["id"]


def test_a_disabled_users_keys_stop_and_come_back(stack: Stack) -> None:
    _, key, key_id = _user_and_key(stack, "alice")
    foreign = stack.cli(
        "keys", "create", "foreign", "--owner-type", "user", "--owner-id", "crm-user-1234"
    )["key"]
    assert stack.status(key) == 200
    stack.cli("users", "disable", "alice")
    assert stack.becomes(key, 401) < 1.5
    assert stack.cli("keys", "show", key_id)["status"] == "active"  # the key itself unchanged
    assert stack.status(foreign) == 200  # an owner bastion does not manage: not affected
    stack.cli("users", "enable", "alice")
    assert stack.becomes(key, 200) < 1.5


def test_deleting_a_user_revokes_their_keys(stack: Stack) -> None:
    _, key, key_id = _user_and_key(stack, "bob")
    assert stack.status(key) == 200
    stack.cli("users", "delete", "bob", "--yes")
    assert stack.becomes(key, 401) < 1.5
    assert stack.cli("keys", "show", key_id)["status"] == "revoked"
