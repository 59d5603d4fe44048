"""CLI commands that change clients and keys write lifecycle events to the audit log.

``record_cli_events`` is tested on both databases; the command walk runs in-process
(typer's runner) on the development SQLite database and then reads the audit log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from bastion.audit.chain import checkpoint_authenticator, verify
from bastion.audit.lifecycle import client_changed
from bastion.cli.context import cli_node_id, record_cli_events
from bastion.crypto import Keyring, MasterKey
from bastion.storage import AuditEvent, Database

ACTOR = f"cli:{getpass.getuser()}"
NODE = f"cli:{socket.gethostname()}"


def test_cli_node_id() -> None:
    assert cli_node_id() == NODE


async def test_record_chains_events_and_continues_the_sequence(db: Database) -> None:
    assert await record_cli_events(db, []) == 0
    first = [client_changed("cli:a", "created", "c1"), client_changed("cli:a", "updated", "c1")]
    assert await record_cli_events(db, first) == 2
    assert await record_cli_events(db, [client_changed("cli:b", "deleted", "c1")]) == 1
    stored = (await db.audit.search(node_id=NODE, newest_first=False)).items
    changes = [e for e in stored if e.type == "client.changed"]
    assert [(e.subject, e.data["action"]) for e in changes] == [
        ("cli:a", "created"),
        ("cli:a", "updated"),
        ("cli:b", "deleted"),
    ]
    # One hash chain across the separate commands (with the writer's own checkpoint
    # records between them), as the server writes it.
    assert [e.seq for e in stored] == list(range(stored[0].seq, stored[0].seq + len(stored)))
    assert all(e.hash and e.client_id == "c1" for e in changes)
    assert [e.prev_hash for e in stored[1:]] == [e.hash for e in stored[:-1]]
    # No checkpoints (nothing pruned): any master key will do.
    authenticator = checkpoint_authenticator(Keyring([MasterKey.generate()]))
    report = await verify(db.audit, authenticator=authenticator, node_id=NODE)
    assert report.intact


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("BASTION_") and not name.startswith("BASTION_TEST_"):
            monkeypatch.delenv(name)
    return tmp_path


def ok(*args: str) -> Any:
    from bastion.cli.app import app

    cut = args.index("--") if "--" in args else len(args)  # after "--" all are arguments
    result = CliRunner().invoke(app, [*args[:cut], "--json", *args[cut:]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def audit_log(directory: Path) -> list[AuditEvent]:
    async def main() -> list[AuditEvent]:
        db = await Database.connect(f"sqlite:///{directory / '.bastion' / 'bastion.db'}")
        try:
            page = await db.audit.search(limit=500, newest_first=False)
            # The writer's own records (chain checkpoints) are not lifecycle events.
            return [e for e in page.items if not e.type.startswith("audit.")]
        finally:
            await db.close()

    return asyncio.run(main())


def test_cli_changes_are_audited_without_secrets(in_process: Path) -> None:
    client = ok("clients", "create", "billing", "--scope", "orders:read")
    client_id = client["client_id"]
    ok("clients", "update", client_id, "--name", "billing-2", "--scope", "orders:write")
    rotated = ok("clients", "rotate-secret", client_id)
    ok("clients", "disable", client_id)
    ok("clients", "enable", client_id)
    ok("clients", "delete", client_id, "--yes")
    key = ok("keys", "create", "ci", "--expires", "30d")
    key_id = key["id"]
    ok("keys", "update", key_id, "--name", "ci-2")
    ok("keys", "disable", key_id)
    ok("keys", "enable", key_id)
    successor = ok("keys", "rotate", key_id)
    ok("keys", "revoke", key_id)
    ok("keys", "delete", key_id, "--yes")
    first = ok("signing-keys", "rotate")["key"]["kid"]
    second = ok("signing-keys", "rotate")["key"]["kid"]
    ok("signing-keys", "retire", "--", second)  # a kid may begin with "-"
    ok("clients", "list")  # reads record nothing

    events = audit_log(in_process)
    assert [e.seq for e in events] == sorted({e.seq for e in events})
    assert {(e.node_id, e.subject, e.outcome) for e in events} == {(NODE, ACTOR, "success")}
    assert [(e.type, e.data["action"], e.data["target"], e.data["fields"]) for e in events] == [
        ("client.changed", "created", client_id, ["name", "scopes"]),
        ("client.changed", "updated", client_id, ["name", "scopes"]),
        ("client.changed", "secret_rotated", client_id, ["client_secret"]),
        ("client.changed", "disabled", client_id, ["disabled"]),
        ("client.changed", "enabled", client_id, ["disabled"]),
        ("client.changed", "deleted", client_id, []),
        ("api_key.changed", "created", key_id, ["expires_at", "name"]),
        ("api_key.changed", "updated", key_id, ["name"]),
        ("api_key.changed", "disabled", key_id, ["disabled"]),
        ("api_key.changed", "enabled", key_id, ["disabled"]),
        ("api_key.changed", "rotated", key_id, ["grace_until"]),
        ("api_key.changed", "revoked", key_id, ["revoked_at"]),
        ("api_key.changed", "deleted", key_id, []),
        ("signing_key.changed", "rotated", first, ["state"]),
        ("signing_key.changed", "rotated", second, ["state"]),
        ("signing_key.changed", "retired", second, ["state"]),
    ]
    assert events[10].data["successor"] == successor["id"]
    assert {e.client_id for e in events[:6]} == {client_id}
    assert {e.key_id for e in events[6:13]} == {key_id}
    dump = orjson.dumps([dataclasses.asdict(e) for e in events], default=str).decode()
    for secret in (client["client_secret"], rotated["client_secret"], key["key"], successor["key"]):
        assert secret not in dump
