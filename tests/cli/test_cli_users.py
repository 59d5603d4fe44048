"""``bastion users …`` end to end on the development SQLite (and PostgreSQL).

The password travels on standard input in real subprocesses (what a user does: a
pipe, never argv); the longer walk runs the same command tree in-process (typer's runner),
because each ``python -m bastion`` start costs seconds on a busy CI machine.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _support import BASTION, clean_env

PASSWORD = "violet staple orbit 42"


def bastion(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASTION, "users", *args],
        input=stdin,
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, ["users", *args], input=stdin, env=env, catch_exceptions=False)


def ok(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Any:
    result = invoke(*args, "--json", stdin=stdin, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_create_reads_the_password_from_stdin_and_never_prints_it(tmp_path: Path) -> None:
    created = bastion("create", "alice", "--password-stdin", stdin=PASSWORD + "\n", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "✓ user created" in created.stdout
    assert PASSWORD not in created.stdout + created.stderr
    assert "$argon2id$" not in created.stdout
    shown = bastion("show", "ALICE", "--json", cwd=tmp_path)
    doc = json.loads(shown.stdout)
    assert (doc["username"], doc["has_password"]) == ("alice", True)


def test_a_weak_password_is_refused_with_the_rule_and_fix(tmp_path: Path) -> None:
    result = bastion("create", "bob", "--password-stdin", "--json", stdin="password", cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "error": "weak_password",
        "detail": "use at least 12 characters (this one has 8); a few unrelated words make a "
        "long password easy to remember",
    }
    common = bastion("create", "bob", "--password-stdin", stdin="1QAZ2WSX3EDC\n", cwd=tmp_path)
    assert common.returncode == 1
    assert common.stderr.strip() == (
        "error: this password is in a list of common or breached passwords; choose another"
    )
    assert json.loads(bastion("list", "--json", cwd=tmp_path).stdout)["items"] == []


def test_reset_password_needs_password_stdin(tmp_path: Path) -> None:
    result = bastion("reset-password", "alice", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: give the new password on standard input with --password-stdin, e.g. "
        "`bastion users reset-password alice --password-stdin < password.txt`"
    )


def test_no_option_takes_a_password_on_the_command_line(tmp_path: Path) -> None:
    result = bastion("create", "carol", "--password", PASSWORD, cwd=tmp_path)
    assert result.returncode == 2
    assert "No such option: --password" in result.stderr


def lifecycle(env: dict[str, str] | None = None) -> None:
    created = ok(
        "create",
        "Dave",
        "--email",
        "dave@example.com",
        "--role",
        "ops",
        "--password-stdin",
        stdin=PASSWORD + "\n",
        env=env,
    )
    user_id = created["id"]
    assert (created["email"], created["roles"], created["disabled"]) == (
        "dave@example.com",
        ["ops"],
        False,
    )
    assert [u["id"] for u in ok("list", env=env)["items"]] == [user_id]
    assert ok("disable", "dave", env=env)["disabled"] is True
    assert ok("enable", user_id, env=env)["disabled"] is False
    updated = ok("update", "dave", "--email", "d@example.org", "--role", "dev", env=env)
    assert (updated["email"], updated["email_verified"], updated["roles"]) == (
        "d@example.org",
        False,
        ["dev"],
    )
    assert ok("update", "dave", "--no-roles", "--email-verified", env=env)["roles"] == []
    nothing = invoke("update", "dave", "--json", env=env)
    assert nothing.exit_code == 1 and "nothing to change" in nothing.stdout
    reset = ok("reset-password", "DAVE", "--password-stdin", stdin="another long phrase", env=env)
    assert reset["password_changed_at"] > created["password_changed_at"]
    assert ok("delete", "dave", "--yes", env=env) == {"deleted": user_id}
    missing = invoke("show", "dave", "--json", env=env)
    assert missing.exit_code == 1
    assert json.loads(missing.stdout) == {
        "error": "not_found",
        "detail": "user 'dave' does not exist",
    }


def test_lifecycle_sqlite(in_process: Path) -> None:
    lifecycle()
    from bastion.settings import load_settings
    from bastion.storage import Database

    async def audit_actions() -> list[str]:
        db = await Database.connect(load_settings().storage_url)
        try:
            page = await db.audit.search(type="user.changed", limit=20)
            return [event.data["action"] for event in page.items]
        finally:
            await db.close()

    assert sorted(asyncio.run(audit_actions())) == sorted(
        ["created", "disabled", "enabled", "updated", "updated", "password_reset", "deleted"]
    )


@pytest.mark.postgres
def test_lifecycle_postgres(in_process: Path, postgres_url: str) -> None:
    from bastion.storage import migrate

    asyncio.run(migrate(postgres_url))
    lifecycle({"BASTION_STORAGE": postgres_url})


def test_bad_metadata_is_named_by_flag(in_process: Path) -> None:
    result = invoke("create", "erin", "--email", "not-an-address", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "error": "invalid_user_metadata",
        "detail": "--email: give an address like name@example.com",
    }


def test_delete_asks_for_confirmation(in_process: Path) -> None:
    ok("create", "frank")
    refused = invoke("delete", "frank", "--json")
    assert refused.exit_code == 1
    assert json.loads(refused.stdout)["detail"] == (
        "deleting a user cannot be undone: confirm with --yes"
    )


def test_consents_and_revoke_consent(in_process: Path) -> None:
    from datetime import UTC, datetime

    from bastion.interaction.consents import ConsentService
    from bastion.oauth.refresh_tokens import RefreshTokenService
    from bastion.settings import load_settings
    from bastion.storage import Client, Database

    user_id = ok("create", "grace")["id"]
    assert ok("consents", "grace") == {"items": []}

    async def seed() -> str:
        settings = load_settings()
        db = await Database.connect(settings.storage_url)
        try:
            client = Client("spa", grant_types=("authorization_code", "refresh_token"))
            await db.clients.create(client)
            refresh = RefreshTokenService(db.refresh_tokens, settings.tokens)
            consents = ConsentService(db, refresh)
            at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
            await consents.give(user_id, "spa", ["openid", "email"], at=at)
            issued = await refresh.issue_family(client, user_id, "openid email")
            return issued.record.id
        finally:
            await db.close()

    token_id = asyncio.run(seed())
    assert ok("consents", "GRACE") == {
        "items": [
            {"client_id": "spa", "scope": "email openid", "created_at": "2026-12-07T12:00:00+00:00"}
        ]
    }
    human = invoke("consents", "grace")
    assert human.exit_code == 0 and "email openid" in human.stdout
    revoked = ok("revoke-consent", "grace", "spa")
    assert revoked["refresh_tokens_revoked"] == 1
    assert [c["scope"] for c in revoked["revoked"]] == ["email openid"]
    assert ok("consents", user_id) == {"items": []}
    missing = invoke("revoke-consent", "grace", "spa", "--json")
    assert missing.exit_code == 1
    assert json.loads(missing.stdout) == {
        "error": "not_found",
        "detail": f"user {user_id!r} has no consent to client 'spa'",
    }

    async def after() -> tuple[bool, list[tuple[str, str | None, dict[str, Any]]]]:
        db = await Database.connect(load_settings().storage_url)
        try:
            token = await db.refresh_tokens.get(token_id)
            page = await db.audit.search(type="consent.revoked", limit=20)
            rows = [(e.subject or "", e.client_id, dict(e.data)) for e in page.items]
            return token.revoked_at is not None, rows
        finally:
            await db.close()

    ended, rows = asyncio.run(after())
    assert ended
    [(subject, client_id, data)] = rows
    assert (subject, client_id, data["action"], data["scopes"]) == (
        user_id,
        "spa",
        "revoked",
        ["email openid"],
    )
    assert data["actor"].startswith("cli")


def test_users_help_lists_the_consent_commands() -> None:
    result = invoke("--help")
    assert "consents" in result.stdout and "revoke-consent" in result.stdout
