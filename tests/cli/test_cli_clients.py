"""``bastion clients …`` end to end on the development SQLite (and PostgreSQL).

What a user sees (secret printed once with a warning, one-line errors, exit codes) is checked
in real subprocesses; the longer walks run the same command tree in-process (typer's runner),
because each ``python -m bastion`` start costs seconds on a busy CI machine.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _support import run_cli
from bastion.crypto import SigningKeyPair


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, ["clients", *args], env=env, catch_exceptions=False)


def ok(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    result = invoke(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def lifecycle(cwd: Path, env: dict[str, str] | None = None) -> None:
    created = ok(
        "create",
        "Billing",
        "--scope",
        "orders:read",
        "--scope",
        "orders:write",
        "--audience",
        "https://api.example.com",
        "--ttl",
        "600",
        cwd=cwd,
        env=env,
    )
    client_id, secret = created["client_id"], created["client_secret"]
    assert re.fullmatch(r"bcs_[A-Za-z0-9_-]{43}", secret)
    assert created["scopes"] == ["orders:read", "orders:write"]
    assert created["access_token_ttl"] == 600
    assert created["secrets"][0]["prefix"] == secret[:8]

    shown = ok("show", client_id, cwd=cwd, env=env)
    assert "client_secret" not in shown and secret not in json.dumps(shown)
    assert [c["client_id"] for c in ok("list", cwd=cwd, env=env)["items"]] == [client_id]

    updated = ok("update", client_id, "--name", "Billing v2", "--default-ttl", cwd=cwd, env=env)
    assert (updated["name"], updated["access_token_ttl"]) == ("Billing v2", None)

    rotated = ok("rotate-secret", client_id, "--grace", "1h", cwd=cwd, env=env)
    assert rotated["client_secret"] != secret
    old, new = rotated["secrets"]
    assert old["prefix"] == secret[:8] and old["expires_at"] is not None
    assert new["expires_at"] is None

    assert ok("disable", client_id, cwd=cwd, env=env)["disabled"] is True
    assert ok("enable", client_id, cwd=cwd, env=env)["disabled"] is False
    assert ok("delete", client_id, "--yes", cwd=cwd, env=env) == {"deleted": client_id}
    missing = invoke("show", client_id, "--json", env=env)
    assert missing.exit_code == 1
    assert json.loads(missing.stdout)["error"] == "not_found"


def test_lifecycle_sqlite(in_process: Path) -> None:
    lifecycle(in_process)


@pytest.mark.postgres
def test_lifecycle_postgres(in_process: Path, postgres_url: str) -> None:
    env = {"BASTION_STORAGE": postgres_url}
    from bastion.storage import migrate

    asyncio.run(migrate(postgres_url))
    lifecycle(in_process, env)


def test_create_prints_the_secret_once_with_a_warning(tmp_path: Path) -> None:
    result = run_cli("clients", "create", "svc", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    secret = re.search(r"bcs_[A-Za-z0-9_-]{43}", result.stdout)
    assert secret is not None
    assert "only time the secret is shown" in result.stderr
    listed = run_cli("clients", "list", cwd=tmp_path)
    assert listed.returncode == 0
    assert secret.group() not in listed.stdout
    assert secret.group()[:8] not in listed.stdout  # listings show no secret at all
    assert "svc" in listed.stdout


def test_private_key_jwt_and_public_clients(in_process: Path) -> None:
    tmp_path = in_process
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [SigningKeyPair.generate("ES256").public_jwk()]}))
    keyed = ok(
        "create", "svc", "--auth-method", "private_key_jwt", "--jwks-file", str(jwks), cwd=tmp_path
    )
    assert keyed["client_secret"] is None
    assert keyed["token_endpoint_auth_method"] == "private_key_jwt"
    # A public client gets the authorization_code grant (and refresh tokens with it).
    public = ok(
        "create",
        "spa",
        "--type",
        "public",
        "--redirect-uri",
        "http://127.0.0.1:8080/cb",
        cwd=tmp_path,
    )
    assert public["grant_types"] == ["authorization_code", "refresh_token"]
    listed = ok("list", cwd=tmp_path)
    assert sorted(client["name"] for client in listed["items"]) == ["spa", "svc"]


def test_errors_are_one_line(tmp_path: Path) -> None:
    bad = run_cli("clients", "create", "x", "--scope", "two words", cwd=tmp_path)
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: --scope: 'two words' is not a scope token")
    assert "Traceback" not in bad.stderr


def test_errors(in_process: Path) -> None:
    doc = json.loads(invoke("create", "x", "--grant", "password", "--json").stdout)
    assert doc["error"] == "invalid_client_metadata"
    assert doc["detail"].startswith("--grant: 'password' is not supported")

    missing_file = invoke(
        "create",
        "x",
        "--auth-method",
        "private_key_jwt",
        "--jwks-file",
        str(in_process / "nope.json"),
        "--json",
    )
    assert missing_file.exit_code == 1
    doc = json.loads(missing_file.stdout)
    assert doc["error"] == "invalid_client_metadata" and "nope.json" in doc["detail"]

    unconfirmed = invoke("delete", "abc", "--json")
    assert unconfirmed.exit_code == 1
    assert json.loads(unconfirmed.stdout) == {
        "error": "invalid_arguments",
        "detail": "deleting a client cannot be undone: confirm with --yes",
    }
    grace = json.loads(invoke("rotate-secret", "abc", "--grace", "soon", "--json").stdout)
    assert grace == {
        "error": "invalid_arguments",
        "detail": "--grace 'soon': not a duration — use seconds or e.g. 30s, 15m, 12h, 90d",
    }
    nothing = json.loads(invoke("update", "abc", "--json").stdout)
    assert nothing["error"] == "invalid_arguments"


def test_human_output_of_show_update_and_rotate_secret(in_process: Path) -> None:
    created = ok("create", "Billing", "--scope", "orders:read", cwd=in_process)
    client_id, secret = created["client_id"], created["client_secret"]
    shown = invoke("show", client_id)
    assert shown.exit_code == 0 and secret not in shown.output
    assert shown.stdout.startswith(f"Billing  {client_id}  (enabled)\n  type          confidential")

    updated = invoke("update", client_id, "--name", "Billing v2", "--scope", "orders:write")
    assert updated.stdout.startswith(
        f"✓ client updated: name, scopes\nBilling v2  {client_id}  (enabled)\n"
    )
    assert "\n  scopes        orders:write\n" in updated.stdout

    rotated = invoke("rotate-secret", client_id, "--grace", "0")
    assert rotated.stdout.startswith(f"✓ new client secret issued\nBilling v2  {client_id}  ")
    (new_secret,) = re.findall(r"bcs_[A-Za-z0-9_-]{43}", rotated.stdout)
    assert new_secret != secret and f"\n  client secret: {new_secret}\n" in rotated.stdout
    assert "This is the only time the secret is shown" in rotated.stderr

    nothing = invoke("update", client_id)
    assert nothing.exit_code == 1
    assert nothing.stderr == "error: nothing to change: give at least one option (see --help)\n"


@pytest.mark.parametrize(
    ("values", "clear"), [("--scope", "--clear-scopes"), ("--audience", "--clear-audiences")]
)
def test_update_refuses_a_list_and_its_clearing_at_once(
    in_process: Path, values: str, clear: str
) -> None:
    # It used to keep the list and drop the --clear-* silently; `keys update` always refused.
    client_id = ok("create", "Billing", "--scope", "orders:read", cwd=in_process)["client_id"]
    both = invoke("update", client_id, values, "x", clear, "--json")
    assert both.exit_code == 1
    assert json.loads(both.stdout) == {
        "error": "invalid_arguments",
        "detail": f"give either {values} or {clear}, not both",
    }
    assert ok("show", client_id, cwd=in_process)["scopes"] == ["orders:read"]


def test_id_token_alg(in_process: Path) -> None:
    """``--id-token-alg``: one of signing_keys.id_token_algorithms; default ES256, written down."""
    default = ok("create", "Web", cwd=in_process)
    assert default["id_token_signed_response_alg"] == "ES256"
    rs = ok("create", "Legacy RP", "--id-token-alg", "RS256", cwd=in_process)
    assert rs["id_token_signed_response_alg"] == "RS256"
    shown = invoke("show", rs["client_id"])
    assert "\n  id token alg  RS256\n" in shown.stdout
    back = ok("update", rs["client_id"], "--id-token-alg", "ES256", cwd=in_process)
    assert back["id_token_signed_response_alg"] == "ES256"
    for alg in ("PS256", "HS256", "none"):
        refused = invoke("create", "x", "--id-token-alg", alg, "--json")
        assert refused.exit_code == 1
        assert json.loads(refused.stdout) == {
            "error": "invalid_client_metadata",
            "detail": f"--id-token-alg: {alg!r} is not offered; use one of ES256, RS256 "
            "(signing_keys.id_token_algorithms)",
        }
    # An operator who offers PS256 too can register it.
    env = {"BASTION_SIGNING_KEYS__ID_TOKEN_ALGORITHMS": '["ES256", "RS256", "PS256"]'}
    ps = ok("create", "PS RP", "--id-token-alg", "PS256", cwd=in_process, env=env)
    assert ps["id_token_signed_response_alg"] == "PS256"


def test_logout_options_create_update_and_show(in_process: Path) -> None:
    created = ok(
        "create",
        "RP",
        "--type",
        "public",
        "--redirect-uri",
        "https://rp.example.com/cb",
        "--post-logout-redirect-uri",
        "https://rp.example.com/bye",
        "--post-logout-redirect-uri",
        "http://127.0.0.1/bye",
        "--backchannel-logout-uri",
        "https://rp.example.com/bc",
        cwd=in_process,
    )
    client_id = created["client_id"]
    assert created["post_logout_redirect_uris"] == [
        "https://rp.example.com/bye",
        "http://127.0.0.1/bye",
    ]
    assert created["backchannel_logout_uri"] == "https://rp.example.com/bc"
    assert created["backchannel_logout_session_required"] is False
    human = invoke("show", client_id)
    assert "after logout  https://rp.example.com/bye, http://127.0.0.1/bye" in human.stdout
    assert "backchannel   https://rp.example.com/bc" in human.stdout
    changed = ok(
        "update",
        client_id,
        "--post-logout-redirect-uri",
        "https://rp.example.com/out",
        "--no-backchannel-logout",
        cwd=in_process,
    )
    assert changed["post_logout_redirect_uris"] == ["https://rp.example.com/out"]
    assert changed["backchannel_logout_uri"] is None
    cleared = ok("update", client_id, "--clear-post-logout-redirect-uris", cwd=in_process)
    assert cleared["post_logout_redirect_uris"] == []
    refused = invoke(
        "update", client_id, "--backchannel-logout-uri", "http://rp.example.com/bc", "--json"
    )
    assert refused.exit_code == 1
    assert json.loads(refused.stdout) == {
        "error": "invalid_client_metadata",
        "detail": "--backchannel-logout-uri: 'http://rp.example.com/bc' must use https (http "
        "only for a loopback host: 127.0.0.1, [::1], localhost)",
    }
    both = invoke(
        "update",
        client_id,
        "--backchannel-logout-uri",
        "https://rp.example.com/bc",
        "--no-backchannel-logout",
    )
    assert both.exit_code != 0
