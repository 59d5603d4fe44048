"""``bastion audit search|tail|verify|prune`` on SQLite (in-process; ``tail -f`` as a process)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _support import clean_env
from bastion.audit.events import Auditor, EventTypes
from bastion.audit.writer import AuditWriter
from bastion.storage import Database, migrate


@pytest.fixture
def storage(in_process: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated SQLite database named by BASTION_STORAGE (for in-process commands)."""
    url = f"sqlite:///{in_process}/audit.db"
    monkeypatch.setenv("BASTION_STORAGE", url)
    asyncio.run(migrate(url))
    return url


def write(url: str, node: str, *events: dict[str, Any]) -> None:
    """Record ``events`` (Auditor.record keyword arguments) and write them as ``node``."""

    async def main() -> None:
        db = await Database.connect(url)
        try:
            auditor = Auditor()
            for event in events:
                auditor.record(**event)
            await AuditWriter(auditor, db, node).flush()
        finally:
            await db.close()

    asyncio.run(main())


def sql(url: str, statement: str) -> None:
    import sqlite3

    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        conn.execute(statement)
    conn.close()


def invoke(*args: str) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, ["audit", *args], catch_exceptions=False)


DENIED = {"type": EventTypes.GATEWAY_DENIED, "outcome": "denied", "reason": "invalid_token"}


def test_search_filters_and_pages(storage: str) -> None:
    write(
        storage,
        "node-a",
        {**DENIED, "subject": "alice", "route": "orders", "ip": "198.51.100.1"},
        {**DENIED, "subject": "bob"},
        {"type": EventTypes.LOGIN, "outcome": "success", "subject": "alice"},
    )
    result = invoke("search", "--subject", "alice", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(e["type"], e["subject"]) for e in doc["items"]] == [
        ("auth.login", "alice"),
        ("gateway.denied", "alice"),
    ]
    assert doc["next_cursor"] is None
    assert doc["items"][1]["seq"] == 1 and doc["items"][1]["node_id"] == "node-a"
    assert len(doc["items"][1]["hash"]) == 64
    only = json.loads(
        invoke("search", "--type", "gateway.denied", "--outcome", "denied", "--json").stdout
    )
    assert [e["subject"] for e in only["items"]] == ["bob", "alice"]
    first = json.loads(invoke("search", "--limit", "2", "--json").stdout)
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = json.loads(
        invoke("search", "--limit", "2", "--cursor", first["next_cursor"], "--json").stdout
    )
    seen = [e["seq"] for e in first["items"] + rest["items"]]
    assert seen == [4, 3, 2, 1]  # 3 events + the writer's checkpoint, newest first
    assert json.loads(invoke("search", "--since", "1h", "--node", "node-b", "--json").stdout) == {
        "items": [],
        "next_cursor": None,
    }
    assert len(json.loads(invoke("search", "--since", "1h", "--json").stdout)["items"]) == 4
    assert json.loads(invoke("search", "--until", "1h", "--json").stdout)["items"] == []


def test_search_text_output_never_prints_control_characters(storage: str) -> None:
    write(storage, "n", {**DENIED, "subject": "evil\x1b[2J\nfake line", "user_agent": "ua\r\n"})
    # A value written into the database by other means is encoded for display too.
    sql(storage, "UPDATE audit_events SET route = 'r\x1b]0;title\x07' WHERE seq = 1")
    result = invoke("search", "--type", "gateway.denied")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\r" not in result.stdout
    assert result.stdout.count("\n") == 2  # the column headers and the one event
    assert "sub:evil\\x1b[2J\\x0afake line" in result.stdout
    assert "route=r\\x1b]0;title\\x07" in result.stdout
    assert "ua=ua\\x0d\\x0a" in result.stdout


def test_bad_time_option_is_one_line(storage: str) -> None:
    result = invoke("search", "--since", "yesterday-ish")
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == (
            "error: --since 'yesterday-ish': use a duration ago (15m, 24h, 7d) or an ISO 8601 time "
            "(2026-01-31T12:00:00Z)"
        )
        or "error: --since 'yesterday-ish'" in result.output
    )


def test_tail_prints_the_latest_oldest_first(storage: str) -> None:
    write(storage, "n", *({**DENIED, "request_id": f"r{i}"} for i in range(5)))
    result = invoke("tail", "-n", "3", "--json")
    assert result.exit_code == 0, result.output
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(d["seq"], d["request_id"]) for d in docs] == [(4, "r3"), (5, "r4"), (6, None)]
    text = invoke("tail", "-n", "1").stdout
    assert "audit.checkpoint" in text and "n#6" in text
    header, line = text.splitlines()
    assert header == "time (UTC)  node#seq  type  outcome  reason  who  ip  route= req= ua= data"
    assert line.split("  ")[1] == "n#6"


def test_search_by_key_client_route_reason_request_and_ip(storage: str) -> None:
    write(
        storage,
        "n",
        {**DENIED, "key_id": "k1", "route": "orders", "ip": "198.51.100.1", "request_id": "a"},
        {**DENIED, "reason": "ip_not_allowed", "key_id": "k2", "ip": "198.51.100.2"},
        {"type": EventTypes.TOKEN_ISSUED, "outcome": "success", "client_id": "svc"},
    )

    def seqs(*args: str) -> list[int]:
        result = invoke("search", *args, "--json")
        assert result.exit_code == 0, result.output
        return [event["seq"] for event in json.loads(result.stdout)["items"]]

    assert seqs("--key", "k1") == [1]
    assert seqs("--client", "svc") == [3]
    assert seqs("--route", "orders") == [1]
    assert seqs("--reason", "ip_not_allowed") == [2]
    assert seqs("--request-id", "a") == [1]
    assert seqs("--ip", "198.51.100.2") == [2]
    assert seqs("--outcome", "denied", "--ip", "198.51.100.2", "--key", "k1") == []
    assert seqs("--outcome", "denied", "--since", "1h", "--until", "2999-01-01") == [2, 1]
    text = invoke("search", "--key", "k2")
    header, line = text.stdout.splitlines()
    assert header.startswith("time (UTC)  node#seq  type  outcome  reason  who")
    assert "ip_not_allowed  key:k2  198.51.100.2" in line
    too_long = invoke("search", "--ip", "1" * 256, "--json")
    assert too_long.exit_code == 1
    assert json.loads(too_long.stdout) == {
        "error": "invalid_arguments",
        "detail": "--ip: at most 255 characters",
    }


def test_verify_intact_and_tampered(storage: str) -> None:
    write(storage, "node-a", DENIED, DENIED, DENIED)
    ok = invoke("verify", "--json")
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["intact"] is True and doc["records"] == 4 and doc["findings"] == []
    text = invoke("verify")
    assert text.exit_code == 0
    assert "audit log intact: 4 record(s) in 1 chain(s)" in text.stdout
    sql(storage, "UPDATE audit_events SET outcome = 'success' WHERE seq = 2")
    sql(storage, "DELETE FROM audit_events WHERE seq = 3")
    bad = invoke("verify", "--json")
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)
    assert doc["intact"] is False and doc["error"] == "audit_chain_broken"
    assert [(f["node_id"], f["kind"], f["seq"]) for f in doc["findings"]] == [
        ("node-a", "modified", 2),
        ("node-a", "deleted", 3),
    ]
    text = invoke("verify")
    assert text.exit_code == 1
    assert "audit log tampered with: 2 finding(s)" in text.stdout
    assert "modified: node node-a seq 2 (id 2): the record's content does not match its hash" in (
        text.stdout
    )
    assert (
        "deleted: node node-a seq 3: seq 3 missing (the chain jumps from seq 2 to seq 4, id 4)"
        in (text.stdout)
    )


def test_forged_checkpoint_fails_verification_until_reanchored(storage: str) -> None:
    write(storage, "n", DENIED, DENIED, DENIED)
    # Someone with database access edits a record and anchors the chain at its head.
    sql(storage, "UPDATE audit_events SET reason = 'edited' WHERE seq = 2")
    sql(
        storage,
        "INSERT INTO audit_checkpoints (node_id, seq, hash, occurred_at, pruned, created_at) "
        "SELECT node_id, seq, hash, occurred_at, 0, occurred_at FROM audit_events WHERE seq = 4",
    )
    bad = invoke("verify", "--json")
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)
    assert doc["error"] == "audit_chain_broken"
    assert [(f["kind"], f["seq"]) for f in doc["findings"]] == [
        ("unauthenticated", 4),
        ("modified", 2),
    ]
    text = invoke("verify")
    assert text.exit_code == 1
    assert (
        "unauthenticated: node n seq 4: checkpoint 1 is not used as an anchor: it has no MAC"
        in (text.stdout)
    )
    # --reanchor signs nothing while anything else is wrong.
    refused = invoke("verify", "--reanchor")
    assert refused.exit_code == 1
    assert "nothing was signed: --reanchor signs only a log that verifies" in refused.stdout
    sql(storage, "UPDATE audit_events SET reason = 'invalid_token' WHERE seq = 2")
    signed = invoke("verify", "--reanchor", "--json")
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["reanchored"] == 1
    assert json.loads(invoke("verify", "--json").stdout)["intact"] is True
    both = invoke("verify", "--reanchor", "--node", "n", "--json")
    assert json.loads(both.stdout)["detail"] == "--reanchor verifies every chain: leave out --node"


def test_prune_keeps_the_log_verifiable(storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    write(storage, "n", DENIED, DENIED)
    nothing = json.loads(invoke("prune", "--json").stdout)  # 365d retention: all recent
    assert nothing["pruned"] == 0 and nothing["checkpoints"] == []
    result = invoke("prune", "--before", "2999-01-01T00:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["before"] == "2999-01-01T00:00:00.000000Z"
    assert doc["pruned"] == 3
    assert [(c["node_id"], c["seq"], c["pruned"]) for c in doc["checkpoints"]] == [("n", 3, 3)]
    assert json.loads(invoke("verify", "--json").stdout)["intact"] is True
    write(storage, "n", DENIED)
    assert json.loads(invoke("verify", "--json").stdout)["intact"] is True
    monkeypatch.setenv("BASTION_AUDIT__RETENTION", "none")
    refused = invoke("prune")
    assert refused.exit_code == 1
    assert "audit.retention is none (keep everything) — give --before to prune anyway" in (
        refused.output
    )


@pytest.mark.timeout(400)
def test_tail_follow_prints_new_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    asyncio.run(migrate(url))
    write(url, "n", DENIED)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion",
            "audit",
            "tail",
            "-f",
            "-n",
            "1",
            "--interval",
            "0.2",
            "--json",
        ],
        env=clean_env({"BASTION_STORAGE": url}),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    started, got_all = threading.Event(), threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            started.set()
            if len(lines) >= 4:
                got_all.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # The last stored event (-n 1) shows the command is running and following.
        if not started.wait(180):
            proc.kill()
            raise AssertionError(f"tail -f printed nothing: {proc.communicate()[1]}")
        write(url, "n", {**DENIED, "request_id": "new-1"}, {**DENIED, "request_id": "new-2"})
        assert got_all.wait(180), lines
    finally:
        proc.terminate()
        proc.wait(20)
    docs = [json.loads(line) for line in lines[:4]]
    assert [(d["seq"], d["request_id"], d["type"]) for d in docs] == [
        (2, None, "audit.checkpoint"),
        (3, "new-1", "gateway.denied"),
        (4, "new-2", "gateway.denied"),
        (5, None, "audit.checkpoint"),
    ]
    assert proc.returncode in (0, -15), proc.stderr.read() if proc.stderr else ""


def test_checkpoints_verify_after_a_master_key_rotation(storage: str) -> None:
    from bastion.cli.app import app

    write(storage, "n", DENIED, DENIED)
    assert invoke("prune", "--before", "2999-01-01T00:00:00Z").exit_code == 0
    rotated = CliRunner().invoke(app, ["secrets", "rotate-master-key", "--json"])
    assert rotated.exit_code == 0, rotated.output
    assert json.loads(rotated.stdout)["resigned_checkpoints"] == 1
    # Only the new master key is left in the file: the checkpoint was signed again under it.
    ok = invoke("verify", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["nodes"][0]["anchor_seq"] == 3
