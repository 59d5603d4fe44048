"""The ``bastion`` command: help everywhere, --json everywhere, one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from _support import run_cli

COMMANDS = [
    [],
    ["serve"],
    ["check-config"],
    ["migrate"],
    ["version"],
    ["secrets"],
    ["secrets", "rotate-master-key"],
    ["secrets", "init-master-key"],
    ["clients"],
    ["users"],
    ["users", "create"],
    ["users", "reset-password"],
    ["keys"],
    ["signing-keys"],
    ["audit"],
    ["doctor"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "bastion")
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_help_lists_the_command_tree(tmp_path: Path) -> None:
    out = run_cli("--help", cwd=tmp_path).stdout
    for name in (
        "serve",
        "check-config",
        "migrate",
        "version",
        "secrets",
        "clients",
        "users",
        "keys",
        "signing-keys",
        "audit",
        "doctor",
    ):
        assert name in out


def test_version_json(tmp_path: Path) -> None:
    result = run_cli("version", "--json", cwd=tmp_path)
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["bastion"] == "0.1.0"


def test_python_dash_m_bastion(tmp_path: Path) -> None:
    assert run_cli("version", cwd=tmp_path).stdout.startswith("bastion 0.1.0")


def test_config_error_json_shape(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("listen: {port: 0}\nlisten_typo: 1\n")
    result = run_cli("check-config", "-c", str(config), "--json", cwd=tmp_path)
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["error"] == "invalid_config"
    assert len(doc["errors"]) == 2
    assert any("listen_typo" in line for line in doc["errors"])


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_cli("check-config", "-c", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_users_group_lists_its_commands(tmp_path: Path) -> None:
    # It was a "not available yet" placeholder (exit 3) until issue 16 brought users.
    out = run_cli("users", "--help", cwd=tmp_path).stdout
    for name in ("create", "list", "show", "disable", "enable", "reset-password", "delete"):
        assert name in out
    assert run_cli("users", "status", cwd=tmp_path).returncode == 2


def test_migrate_sqlite_status_then_apply(tmp_path: Path) -> None:
    status = json.loads(run_cli("migrate", "--status", "--json", cwd=tmp_path).stdout)
    assert status["current"] is None
    assert status["pending"][-1] == status["head"]
    applied = run_cli("migrate", "--json", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["applied"] == status["pending"]
    again = json.loads(run_cli("migrate", "--json", cwd=tmp_path).stdout)
    assert again["applied"] == []


@pytest.mark.postgres
def test_migrate_postgres(tmp_path: Path, postgres_url: str) -> None:
    env = {"BASTION_STORAGE": postgres_url}
    result = run_cli("migrate", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["applied"] and "postgres" in doc["database"]
    status = json.loads(run_cli("migrate", "--status", "--json", env=env, cwd=tmp_path).stdout)
    assert status["pending"] == []


def test_database_down_for_migrate_is_one_line(tmp_path: Path) -> None:
    env = {"BASTION_STORAGE": "postgresql://u:topsecret@127.0.0.1:1/db"}
    result = run_cli("migrate", env=env, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "topsecret" not in result.stderr


def test_rotate_master_key_rewraps_stored_secrets(tmp_path: Path) -> None:
    """A secret sealed under the old key opens under the new key file, and only under it."""
    import asyncio

    from bastion.crypto import DecryptionError, load_keyring_file
    from bastion.storage import Database, SigningKey, migrate
    from bastion.storage.sql.schema import seal_context

    data = tmp_path / ".bastion"
    assert run_cli("migrate", cwd=tmp_path).returncode == 0
    # first serve-less use creates the dev master key the same way serve does
    from bastion.crypto import create_keyring_file

    old = create_keyring_file(data / "master.key")
    url = f"sqlite:///{data / 'bastion.db'}"
    context = seal_context("signing_keys", "private_key_sealed", "k1")

    async def store() -> None:
        await migrate(url)
        db = await Database.connect(url)
        try:
            now = datetime.now(UTC)
            await db.signing_keys.create(
                SigningKey(
                    kid="k1",
                    alg="ES256",
                    state="active",
                    public_jwk={"kty": "EC"},
                    private_key_sealed=old.seal(b"private key bytes", context=context),
                    created_at=now,
                    activates_at=now,
                    retires_at=None,
                    retired_at=None,
                )
            )
        finally:
            await db.close()

    async def read() -> str:
        db = await Database.connect(url)
        try:
            return (await db.signing_keys.get("k1")).private_key_sealed
        finally:
            await db.close()

    asyncio.run(store())
    result = run_cli("secrets", "rotate-master-key", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rewrapped"] == 1
    assert doc["old_key_ids"] == [old.primary.key_id]
    assert doc["new_key_id"] != old.primary.key_id
    assert "bmk1:" not in result.stdout

    new = load_keyring_file(data / "master.key")
    assert list(new.key_ids) == [doc["new_key_id"]]
    sealed = asyncio.run(read())
    assert new.open(sealed, context=context) == b"private key bytes"
    with pytest.raises(DecryptionError):
        old.open(sealed, context=context)


def test_rotate_refuses_inline_master_key(tmp_path: Path) -> None:
    from bastion.crypto import MasterKey

    env = {"BASTION_SECRETS__MASTER_KEY": MasterKey.generate().encode()}
    result = run_cli("secrets", "rotate-master-key", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "master_key_file" in result.stderr
    assert "bmk1:" not in result.stderr


def test_init_master_key_writes_a_private_file_and_never_overwrites(tmp_path: Path) -> None:
    from bastion.crypto.envelope import load_keyring_file

    path = tmp_path / "secrets" / "master.key"
    result = run_cli("secrets", "init-master-key", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    keyring = load_keyring_file(path)
    assert doc == {"key_file": str(path), "key_id": keyring.primary.key_id}
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    assert keyring.primary.encode() not in result.stdout + result.stderr
    before = path.read_bytes()
    again = run_cli("secrets", "init-master-key", str(path), "--json", cwd=tmp_path)
    assert again.returncode == 1
    assert json.loads(again.stdout) == {
        "error": "master_key_invalid",
        "detail": f"master key file {path} already exists; refusing to overwrite it",
    }
    assert path.read_bytes() == before


def test_check_config_refuses_an_inline_master_key_not_in_bastion_format(tmp_path: Path) -> None:
    env = {"BASTION_SECRETS__MASTER_KEY": "A" * 43 + "="}
    result = run_cli("check-config", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["error"] == "invalid_config"
    assert doc["detail"] == (
        "secrets.master_key is corrupt (item 1 is not a bastion master key: it looks like plain "
        "base64, e.g. from `openssl rand -base64 32`); each key is bmk1: followed by 43 "
        "base64url characters — create one with `bastion secrets init-master-key PATH` and "
        "point secrets.master_key_file at it"
    )


def test_check_config_refuses_a_missing_master_key_file(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "master.key"
    env = {"BASTION_SECRETS__MASTER_KEY_FILE": str(path)}
    result = run_cli("check-config", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert json.loads(result.stdout)["detail"] == (
        f"master key file {path} does not exist; check secrets.master_key_file, create it "
        f"with `bastion secrets init-master-key {path}` (a new installation) or restore the "
        "file from your backup"
    )
    assert not path.exists()  # check-config creates nothing
