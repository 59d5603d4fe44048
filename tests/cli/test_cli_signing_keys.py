"""``bastion signing-keys list|rotate|retire`` through a real subprocess, with --json shapes."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from _support import run_cli
from _support.subscriptions import subscribed
from _support.waiting import wait_until_async
from bastion.crypto import load_keyring_file
from bastion.oauth import SigningKeyManager
from bastion.oauth.signing_keys import CHANNEL
from bastion.settings import Settings
from bastion.storage import Database
from bastion.storage.shared import open_shared_state

KEY_MEMBERS = {"kid", "alg", "state", "created_at", "activates_at", "retires_at", "retired_at"}


OUTPUTS: list[str] = []


def _json(
    command: str, *args: str, cwd: Path, env: dict[str, str] | None = None, rc: int = 0
) -> Any:
    # --json goes before the arguments: an argument after "--" is never an option.
    result = run_cli("signing-keys", command, "--json", *args, cwd=cwd, env=env)
    assert result.returncode == rc, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    _no_private_material(result.stdout + result.stderr)
    OUTPUTS.append(result.stdout + result.stderr)
    return json.loads(result.stdout)


def _no_private_material(text: str) -> None:
    assert "PRIVATE KEY" not in text
    assert '"d"' not in text
    assert "private_key" not in text


async def _sealed_values(db_file: Path) -> list[str]:
    db = await Database.connect(f"sqlite:///{db_file}")
    try:
        return [key.private_key_sealed for key in await db.signing_keys.list()]
    finally:
        await db.close()


def test_list_rotate_retire(tmp_path: Path) -> None:
    OUTPUTS.clear()
    assert _json("list", cwd=tmp_path) == {"keys": []}

    # With no key at all, the first one is active at once.
    first = _json("rotate", cwd=tmp_path)["key"]
    assert set(first) == KEY_MEMBERS
    assert first["state"] == "active" and first["alg"] == "ES256"
    assert first["activates_at"] == first["created_at"]
    assert first["retires_at"] is None and first["retired_at"] is None

    # One lifecycle per algorithm: the first RS256 key is active at once too, the next one
    # is pre-published, and neither touches the ES256 key.
    rsa = _json("rotate", "--algorithm", "RS256", cwd=tmp_path)["key"]
    assert rsa["state"] == "active" and rsa["alg"] == "RS256"
    pending = _json("rotate", "--alg", "RS256", cwd=tmp_path)["key"]
    assert pending["state"] == "next" and pending["alg"] == "RS256"
    created = datetime.fromisoformat(pending["created_at"])
    assert datetime.fromisoformat(pending["activates_at"]) - created == timedelta(seconds=900)
    refused = _json("rotate", "--algorithm", "EdDSA", cwd=tmp_path, rc=1)
    assert refused == {
        "error": "signing_algorithm_not_configured",
        "detail": "bastion does not sign with 'EdDSA': it keeps keys for ES256, RS256 — add "
        "it to signing_keys.id_token_algorithms (or make it signing_keys.algorithm) first",
    }

    human = run_cli("signing-keys", "list", cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    OUTPUTS.append(human.stdout)
    for kid in (first["kid"], rsa["kid"], pending["kid"]):
        assert kid in human.stdout  # never truncated: `retire` takes it
    assert "active" in human.stdout and "next" in human.stdout
    _no_private_material(human.stdout)
    only_rsa = _json("list", "--algorithm", "RS256", cwd=tmp_path)["keys"]
    assert [(key["kid"], key["state"]) for key in only_rsa] == [
        (rsa["kid"], "active"),
        (pending["kid"], "next"),
    ]

    # A kid is base64url: one in 64 begins with "-", so it goes after "--" (as the help says).
    refused = _json("retire", "--", first["kid"], cwd=tmp_path, rc=1)
    assert refused == {
        "error": "signing_key_in_use",
        "detail": (
            f"signing key {first['kid']!r} is the active ES256 key and cannot be retired — "
            "make a replacement active first (`bastion signing-keys rotate --algorithm ES256 "
            f"--now`), then retire {first['kid']!r}"
        ),
    }

    emergency = _json("rotate", "--now", cwd=tmp_path)["key"]
    assert emergency["state"] == "active" and emergency["alg"] == "ES256"
    # The guard: a kid of another algorithm than the one named is refused, nothing changes.
    mismatch = _json("retire", "--algorithm", "RS256", "--", first["kid"], cwd=tmp_path, rc=1)
    assert mismatch == {
        "error": "signing_key_algorithm_mismatch",
        "detail": f"signing key {first['kid']!r} is an ES256 key, not RS256",
    }

    retired = _json("retire", "--", first["kid"], cwd=tmp_path)["key"]
    assert set(retired) == KEY_MEMBERS
    assert retired["kid"] == first["kid"]
    assert retired["state"] == "retired" and retired["retired_at"] is not None

    done = run_cli("signing-keys", "retire", "--", pending["kid"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    OUTPUTS.append(done.stdout)
    assert f"signing key {pending['kid']} is retired" in done.stdout

    listing = _json("list", cwd=tmp_path)
    assert [(key["kid"], key["state"]) for key in listing["keys"]] == [
        (first["kid"], "retired"),
        (rsa["kid"], "active"),  # the emergency rotation of ES256 left it alone
        (pending["kid"], "retired"),
        (emergency["kid"], "active"),
    ]
    assert all(set(key) == KEY_MEMBERS for key in listing["keys"])

    # Not even the sealed form of a private key is ever printed.
    sealed = asyncio.run(_sealed_values(tmp_path / ".bastion" / "bastion.db"))
    assert len(sealed) == 4
    for value in sealed:
        for output in OUTPUTS:
            assert value.split(".")[-1][:24] not in output


def test_retire_unknown_kid_is_one_line(tmp_path: Path) -> None:
    result = run_cli("signing-keys", "retire", "no-such-kid", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: signing key 'no-such-kid' does not exist"


def test_unknown_algorithm_is_refused(tmp_path: Path) -> None:
    result = run_cli("signing-keys", "rotate", "--alg", "HS256", cwd=tmp_path)
    assert result.returncode == 2
    assert "HS256" in result.stderr
    assert "Traceback" not in result.stderr


def test_configured_algorithm(tmp_path: Path) -> None:
    env = {"BASTION_SIGNING_KEYS__ALGORITHM": "PS256", "BASTION_SIGNING_KEYS__RSA_KEY_SIZE": "2048"}
    key = _json("rotate", cwd=tmp_path, env=env)["key"]
    assert key["alg"] == "PS256"


@pytest.mark.redis
async def test_a_running_node_reloads_when_the_cli_rotates(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """Over Redis pub/sub the CLI's change reaches a running manager at once, not at its refresh."""
    env = {"BASTION_SHARED__URL": redis_url, "BASTION_SHARED__KEY_PREFIX": redis_prefix}
    first = (await asyncio.to_thread(_json, "rotate", cwd=tmp_path, env=env))["key"]

    settings = Settings()
    keyring = load_keyring_file(tmp_path / ".bastion" / "master.key")
    db = await Database.connect(f"sqlite:///{tmp_path / '.bastion' / 'bastion.db'}")
    shared = await open_shared_state(redis_url, key_prefix=redis_prefix)
    node = SigningKeyManager(db, keyring, settings, shared, refresh_interval=3600)
    stop = asyncio.Event()
    try:
        # The CLI rotated ES256 only: the node creates the RS256 key it needs beside it.
        assert await node.load() is True
        assert node.current().kid == first["kid"]
        rsa = node.current("RS256").kid
        task = asyncio.create_task(node.run(stop))
        await wait_until_async(lambda: subscribed(shared, CHANNEL), "the node's subscription")
        new = (await asyncio.to_thread(_json, "rotate", "--now", cwd=tmp_path, env=env))["key"]
        deadline = time.monotonic() + 5
        while node.current().kid != new["kid"]:
            assert time.monotonic() < deadline, "the running node did not reload"
            await asyncio.sleep(0.05)
        assert {jwk["kid"] for jwk in node.jwks()["keys"]} == {first["kid"], new["kid"], rsa}
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        stop.set()
        await shared.close()
        await db.close()
