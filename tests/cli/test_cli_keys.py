"""``bastion keys …`` end to end on the development SQLite (and PostgreSQL).

What a user sees (the key printed once with a warning, never in listings, one-line errors)
is checked in a real subprocess; the lifecycle walk runs the same command tree in-process
(typer's runner), because each ``python -m bastion`` start costs seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _support import run_cli
from bastion.crypto import API_KEY_REGEX


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, ["keys", *args], env=env, catch_exceptions=False)


def ok(*args: str, env: dict[str, str] | None = None) -> Any:
    result = invoke(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def verify(key: str, env: dict[str, str] | None = None) -> str:
    """Verify ``key`` against the command's database the way the gateway does."""
    from bastion.apikeys import ApiKeyService, InvalidApiKeyError
    from bastion.settings import load_settings
    from bastion.storage import Database
    from bastion.storage.shared import MemorySharedState

    settings = load_settings(None, {**os.environ, **(env or {})})

    async def main() -> str:
        db = await Database.connect(settings.storage_url)
        try:
            service = ApiKeyService(db, settings, MemorySharedState())
            try:
                return (await service.verify(key)).id
            except InvalidApiKeyError as error:
                return f"refused: {error.reason}"
        finally:
            await db.close()

    return asyncio.run(main())


def lifecycle(env: dict[str, str] | None = None) -> None:
    created = ok(
        "create",
        "ci deploy",
        "--owner-type",
        "client",
        "--owner-id",
        "svc-1",
        "--scope",
        "orders:read",
        "--scope",
        "orders:write",
        "--route",
        "orders",
        "--expires",
        "30d",
        "--ip-allow",
        "10.0.0.0/8",
        "--rate-limit",
        "100/minute",
        "--metadata",
        "team=billing",
        "--metadata",
        "ticket=OPS-1",
        env=env,
    )
    key_id, key = created["id"], created["key"]
    assert re.fullmatch(API_KEY_REGEX, key)
    assert created["prefix"] == key[:10]
    assert (created["owner_type"], created["owner_id"]) == ("client", "svc-1")
    assert created["scopes"] == ["orders:read", "orders:write"]
    assert created["routes"] == ["orders"]
    assert created["ip_allow"] == ["10.0.0.0/8"]
    assert created["rate_limits"] == [{"rate": "100/minute"}]
    assert created["metadata"] == {"team": "billing", "ticket": "OPS-1"}
    expires = datetime.fromisoformat(created["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    assert "digest" not in created

    shown = ok("show", key_id, env=env)
    assert "key" not in shown and key not in json.dumps(shown)
    listed = ok("list", env=env)
    assert [k["id"] for k in listed["items"]] == [key_id]
    assert key not in json.dumps(listed)
    assert ok("list", "--owner-type", "user", env=env)["items"] == []

    updated = ok("update", key_id, "--name", "ci v2", "--clear-ip-allow", "--no-expiry", env=env)
    assert (updated["name"], updated["ip_allow"], updated["expires_at"]) == ("ci v2", [], None)
    assert updated["scopes"] == ["orders:read", "orders:write"]
    assert verify(key, env) == key_id

    rotated = ok("rotate", key_id, "--grace", "1h", env=env)
    new_key = rotated["key"]
    assert new_key != key and rotated["rotated_from"] == key_id
    assert rotated["previous"]["status"] == "grace"
    assert rotated["name"] == "ci v2"
    assert verify(key, env) == key_id
    assert verify(new_key, env) == rotated["id"]

    assert ok("disable", rotated["id"], env=env)["status"] == "disabled"
    assert verify(new_key, env) == "refused: disabled"
    assert ok("enable", rotated["id"], env=env)["status"] == "active"
    assert ok("revoke", key_id, env=env)["status"] == "revoked"
    assert verify(key, env) == "refused: revoked"
    assert ok("delete", key_id, "--yes", env=env) == {"deleted": key_id}
    missing = invoke("show", key_id, "--json", env=env)
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"] == "not_found"


def test_lifecycle_sqlite(in_process: Path) -> None:
    lifecycle()


@pytest.mark.postgres
def test_lifecycle_postgres(in_process: Path, postgres_url: str) -> None:
    from bastion.storage import migrate

    asyncio.run(migrate(postgres_url))
    lifecycle({"BASTION_STORAGE": postgres_url})


def test_create_prints_the_key_once_with_a_warning(tmp_path: Path) -> None:
    result = run_cli("keys", "create", "svc", "--scope", "a:b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = re.findall(API_KEY_REGEX, result.stdout)
    assert len(found) == 1
    key = found[0]
    assert "only time the API key is shown" in result.stderr
    listed = run_cli("keys", "list", cwd=tmp_path, env={"COLUMNS": "120"})
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout and key[10:] not in listed.stdout
    assert key[:10] in listed.stdout  # the display prefix tells keys apart
    assert "svc" in listed.stdout and "active" in listed.stdout


def test_errors(in_process: Path) -> None:
    doc = json.loads(invoke("create", "x", "--scope", "two words", "--json").stdout)
    assert doc["error"] == "invalid_api_key_metadata"
    assert doc["detail"].startswith("--scope: 'two words' is not a scope token")

    doc = json.loads(invoke("create", "x", "--expires", "someday", "--json").stdout)
    assert doc == {
        "error": "invalid_arguments",
        "detail": "--expires 'someday': use a duration from now (30d, 12h) or an ISO 8601 time "
        "(2026-01-31T12:00:00Z)",
    }
    doc = json.loads(invoke("create", "x", "--expires", "2001-01-01", "--json").stdout)
    assert doc["detail"] == "--expires: must be in the future"
    doc = json.loads(invoke("create", "x", "--rate-limit", "10/fortnight", "--json").stdout)
    assert doc == {
        "error": "invalid_api_key_metadata",
        "detail": "--rate-limit: invalid rate limit '10/fortnight': unknown unit 'fortnight' "
        "(use second, minute, hour or day)",
    }
    key_id = ok("create", "named")["id"]
    doc = json.loads(invoke("update", key_id, "--name", "", "--json").stdout)
    assert doc["detail"] == "--name: give the key a non-empty name"
    doc = json.loads(invoke("create", "x", "--metadata", "novalue", "--json").stdout)
    assert doc == {
        "error": "invalid_arguments",
        "detail": "--metadata 'novalue': write it as key=value",
    }
    doc = json.loads(invoke("create", "x", "--ip-allow", "nope", "--json").stdout)
    assert doc["detail"].startswith("--ip-allow: 'nope' is not an IP address or CIDR")

    unconfirmed = invoke("delete", "abc", "--json")
    assert unconfirmed.exit_code == 1
    assert json.loads(unconfirmed.stdout) == {
        "error": "invalid_arguments",
        "detail": "deleting an API key cannot be undone: confirm with --yes",
    }
    grace = json.loads(invoke("rotate", "abc", "--grace", "soon", "--json").stdout)
    assert (
        grace["detail"] == "--grace 'soon': not a duration — use seconds or e.g. 30s, 15m, 12h, 90d"
    )
    nothing = json.loads(invoke("update", "abc", "--json").stdout)
    assert nothing["error"] == "invalid_arguments"
    both = json.loads(invoke("update", "abc", "--scope", "a", "--clear-scopes", "--json").stdout)
    assert both["detail"] == "give either --scope or --clear-scopes, not both"


def test_rotating_a_revoked_key_is_a_one_line_error(tmp_path: Path) -> None:
    created = run_cli("keys", "create", "svc", "--json", cwd=tmp_path)
    key_id = json.loads(created.stdout)["id"]
    assert run_cli("keys", "revoke", key_id, cwd=tmp_path).returncode == 0
    result = run_cli("keys", "rotate", key_id, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: API key {key_id} is revoked; create a new key instead"]


def test_keys_are_found_by_display_prefix(in_process: Path) -> None:
    created = ok("create", "svc", "--rate-limit", "10/min", "--rate-limit", "5/s")
    prefix = created["prefix"]
    assert [r["rate"] for r in created["rate_limits"]] == ["10/min", "5/s"]
    assert ok("show", prefix)["id"] == created["id"]
    assert ok("show", prefix + "…")["id"] == created["id"]  # as `keys list` prints it
    assert ok("disable", prefix)["status"] == "disabled"
    text = invoke("enable", prefix)
    assert text.stdout.strip() == f"✓ API key {created['id']} ({prefix}…) enabled"
    from bastion.cli.app import app

    limits = CliRunner().invoke(app, ["limits", "show", prefix, "--json"])
    assert json.loads(limits.stdout)["key_id"] == created["id"]
    missing = json.loads(invoke("show", "bst_nothing", "--json").stdout)
    assert missing == {
        "error": "not_found",
        "detail": "no API key has the id or display prefix 'bst_nothing'",
    }


def test_an_ambiguous_display_prefix_is_an_error(in_process: Path) -> None:
    import sqlite3

    first, second = ok("create", "one"), ok("create", "two")
    conn = sqlite3.connect(in_process / ".bastion" / "bastion.db")
    with conn:
        conn.execute("UPDATE api_keys SET prefix = ?", (first["prefix"],))
    conn.close()
    result = invoke("revoke", first["prefix"], "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "error": "ambiguous_api_key",
        "detail": f"display prefix {first['prefix']!r} matches 2 API keys "
        f"({first['id']}, {second['id']}): give the key's id",
    }
    assert ok("show", second["id"])["status"] == "active"  # nothing was revoked


def human(*args: str) -> Any:
    """Run a command without --json; it must succeed."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def test_human_output_of_show_update_and_rotate(in_process: Path) -> None:
    created = ok("create", "svc", "--scope", "a:b")
    key_id, prefix = created["id"], created["prefix"]
    shown = human("show", key_id).stdout
    assert shown.startswith(f"svc  {key_id}  (active)\n  prefix        {prefix}…\n")
    assert created["key"] not in shown

    lines = human("update", key_id, "--name", "svc v2", "--scope", "c:d").stdout.splitlines()
    assert lines[:2] == ["✓ API key updated: name, scopes", f"svc v2  {key_id}  (active)"]
    assert "  scopes        c:d" in lines

    rotated = human("rotate", key_id, "--grace", "1h")
    until = ok("show", key_id)["grace_until"]
    assert rotated.stdout.startswith(f"✓ API key rotated: {prefix}… works until {until}\nsvc v2 ")
    (new_key,) = re.findall(API_KEY_REGEX, rotated.stdout)
    assert f"\n  API key: {new_key}\n" in rotated.stdout
    assert "This is the only time the API key is shown" in rotated.stderr

    nothing = invoke("update", key_id)
    assert (nothing.exit_code, nothing.stderr) == (
        1,
        "error: nothing to change: give at least one option (see --help)\n",
    )
