"""Hash chains: canonical encoding, chaining, and verify() finding tampering done with SQL.

The tampering tests run on SQLite and PostgreSQL (the ``db`` fixture) and alter
rows directly, as someone with database access would.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bastion.audit.chain import (
    GENESIS,
    AuditChainBrokenError,
    ChainHead,
    canonical,
    chain_events,
    checkpoint_authenticator,
    checkpoint_signer,
    compute_hash,
    inspect,
    reanchor,
    resign_checkpoints,
    verify,
)
from bastion.audit.events import Event, EventTypes
from bastion.crypto import Keyring, MasterKey
from bastion.storage import AuditCheckpoint, AuditEvent, Database

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEYRING = Keyring([MasterKey.generate()])
AUTH = checkpoint_authenticator(KEYRING)
SIGN = checkpoint_signer(KEYRING)


def _events(count: int, start: datetime = T0) -> list[Event]:
    return [
        Event(
            type=EventTypes.GATEWAY_DENIED,
            outcome="denied",
            reason="invalid_token",
            ip="198.51.100.7",
            user_agent="curl/8",
            subject=f"user-{i}",
            route="orders",
            data={"status": 401, "n": i, "nested": {"b": 1, "a": [1, 2]}},
            occurred_at=start + timedelta(seconds=i),
        )
        for i in range(count)
    ]


async def _store(db: Database, node: str, count: int, start: datetime = T0) -> list[AuditEvent]:
    head = await db.audit.last_for_node(node)
    records = chain_events(
        node, ChainHead(head.seq, head.hash) if head else ChainHead(), _events(count, start)
    )
    await db.audit.append_batch(records)
    return records


async def _sql(db: Database, statement: str, **params: object) -> None:
    async with db.transaction(write=True) as conn:
        await conn.execute(sa.text(statement), params)


async def _id(db: Database, node: str, seq: int) -> int:
    (record,) = await db.audit.chain(node, after_seq=seq - 1, limit=1)
    assert record.seq == seq and record.id is not None
    return record.id


# -- encoding and chaining (no database) -------------------------------------------


def test_canonical_encoding_is_stable_and_covers_every_member() -> None:
    (record,) = chain_events("node-a", ChainHead(), _events(1))
    assert canonical(record) == (
        b'{"client_id":null,"data":{"n":0,"nested":{"a":[1,2],"b":1},"status":401},'
        b'"ip":"198.51.100.7","key_id":null,"node_id":"node-a",'
        b'"occurred_at":"2026-01-01T12:00:00.123456Z","outcome":"denied",'
        b'"prev_hash":"' + GENESIS.encode() + b'","reason":"invalid_token","request_id":null,'
        b'"route":"orders","seq":1,"subject":"user-0","type":"gateway.denied",'
        b'"user_agent":"curl/8","v":1}'
    )
    assert record.hash == compute_hash(record)
    assert len(record.hash) == 64


def test_chain_links_each_record_to_the_previous() -> None:
    records = chain_events("n", ChainHead(7, "ab" * 32), _events(3))
    assert [r.seq for r in records] == [8, 9, 10]
    assert records[0].prev_hash == "ab" * 32
    assert records[1].prev_hash == records[0].hash
    assert records[2].prev_hash == records[1].hash


def test_every_member_changes_the_hash() -> None:
    from dataclasses import replace

    (record,) = chain_events("n", ChainHead(), _events(1))
    changes = {
        "node_id": "m",
        "seq": 2,
        "occurred_at": T0 + timedelta(microseconds=1),
        "type": "x",
        "outcome": "success",
        "reason": "y",
        "request_id": "r",
        "ip": "192.0.2.1",
        "user_agent": "u",
        "subject": "s",
        "client_id": "c",
        "key_id": "k",
        "route": "r2",
        "data": {"status": 402},
        "prev_hash": "1" * 64,
    }
    for name, value in changes.items():
        assert compute_hash(replace(record, **{name: value})) != record.hash, name
    # id and hash are not covered (assigned by the database / the result).
    assert compute_hash(replace(record, id=5, hash="x")) == record.hash


# -- verify on both databases ------------------------------------------------------


async def test_intact_log_verifies(db: Database) -> None:
    await _store(db, "node-a", 5)
    await _store(db, "node-a", 3)
    await _store(db, "node-b", 4)
    report = await verify(db.audit, authenticator=AUTH, page_size=2)  # several pages per chain
    assert report.intact and report.records == 12
    assert [(n.node_id, n.records, n.first_seq, n.last_seq) for n in report.nodes] == [
        ("node-a", 8, 1, 8),
        ("node-b", 4, 1, 4),
    ]


async def test_empty_log_verifies(db: Database) -> None:
    report = await verify(db.audit, authenticator=AUTH)
    assert report.intact and report.records == 0 and report.nodes == []


async def test_modified_record_is_pinpointed(db: Database) -> None:
    await _store(db, "node-a", 5)
    await _store(db, "node-b", 3)
    target = await _id(db, "node-a", 3)
    await _sql(db, "UPDATE audit_events SET reason = 'ok' WHERE id = :id", id=target)
    with pytest.raises(AuditChainBrokenError) as info:
        await verify(db.audit, authenticator=AUTH)
    (finding,) = info.value.report.findings
    assert (finding.node_id, finding.kind, finding.seq, finding.id) == (
        "node-a",
        "modified",
        3,
        target,
    )
    assert str(finding) == (
        f"modified: node node-a seq 3 (id {target}): the record's content does not match its hash"
    )
    assert info.value.code == "audit_chain_broken"
    assert info.value.detail == str(finding)


async def test_modified_data_json_is_pinpointed(db: Database) -> None:
    await _store(db, "n", 4)
    target = await _id(db, "n", 2)
    await _sql(
        db, "UPDATE audit_events SET data = :data WHERE id = :id", id=target, data='{"status": 200}'
    )
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq, finding.id) == ("modified", 2, target)


async def test_rewritten_record_with_recomputed_hash_is_pinpointed(db: Database) -> None:
    from dataclasses import replace

    records = await _store(db, "n", 5)
    forged = replace(records[2], subject="someone-else", hash="")
    forged = replace(forged, hash=compute_hash(forged))
    target = await _id(db, "n", 3)
    await _sql(
        db,
        "UPDATE audit_events SET subject = :s, hash = :h WHERE id = :id",
        s="someone-else",
        h=forged.hash,
        id=target,
    )
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq, finding.id) == ("modified", 3, target)
    assert finding.detail == "the record was rewritten: its hash is not the prev_hash of seq 4"


async def test_deleted_record_is_pinpointed(db: Database) -> None:
    await _store(db, "n", 6)
    after = await _id(db, "n", 4)
    await _sql(db, "DELETE FROM audit_events WHERE node_id = 'n' AND seq = 3")
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq, finding.id) == ("deleted", 3, None)
    assert finding.detail == f"seq 3 missing (the chain jumps from seq 2 to seq 4, id {after})"


async def test_deleted_range_and_first_record(db: Database) -> None:
    await _store(db, "n", 8)
    await _sql(db, "DELETE FROM audit_events WHERE node_id = 'n' AND seq IN (1, 4, 5, 6)")
    findings = (await inspect(db.audit, authenticator=AUTH)).findings
    assert [(f.kind, f.seq) for f in findings] == [("deleted", 1), ("deleted", 4)]
    assert findings[0].detail.startswith(
        "seq 1 missing (the chain should continue at seq 1 but starts at seq 2"
    )
    assert findings[1].detail.startswith("seq 4 to 6 missing (the chain jumps from seq 3 to seq 7")


async def test_reordered_records_are_pinpointed(db: Database) -> None:
    await _store(db, "n", 5)
    a, b = await _id(db, "n", 2), await _id(db, "n", 3)
    # Swap the positions of seq 2 and 3 (through a free seq: (node_id, seq) is unique).
    await _sql(db, "UPDATE audit_events SET seq = 1000 WHERE id = :id", id=a)
    await _sql(db, "UPDATE audit_events SET seq = 2 WHERE id = :id", id=b)
    await _sql(db, "UPDATE audit_events SET seq = 3 WHERE id = :id", id=a)
    findings = (await inspect(db.audit, authenticator=AUTH)).findings
    assert [(f.kind, f.seq, f.id, f.detail) for f in findings] == [
        ("reordered", 2, b, "this record was written as seq 3"),
        ("reordered", 3, a, "this record was written as seq 2"),
    ]


async def test_rows_swapped_in_append_order_are_reordered(db: Database) -> None:
    await _store(db, "n", 4)
    a, b = await _id(db, "n", 2), await _id(db, "n", 3)
    # Seq 2's row moved to the end of the table's append order (search shows it newest).
    await _sql(db, "UPDATE audit_events SET id = 100000 WHERE id = :id", id=a)
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq, finding.id) == ("reordered", 3, b)
    assert finding.detail == f"stored before seq 2 (id {b} < id 100000)"


async def test_verify_passes_after_pruning_and_still_detects_tampering(db: Database) -> None:
    await _store(db, "n", 5, start=T0)
    await _store(db, "n", 5, start=T0 + timedelta(days=30))
    await _store(db, "m", 3, start=T0)
    checkpoints = await db.audit.prune_before(T0 + timedelta(days=1), sign=SIGN)
    assert sorted((c.node_id, c.seq, c.pruned) for c in checkpoints) == [("m", 3, 3), ("n", 5, 5)]
    report = await verify(db.audit, authenticator=AUTH)
    assert [(n.node_id, n.records, n.anchor_seq, n.first_seq) for n in report.nodes] == [
        ("m", 0, 3, None),
        ("n", 5, 5, 6),
    ]
    # The record right after the checkpoint is removed: detected.
    await _sql(db, "DELETE FROM audit_events WHERE node_id = 'n' AND seq = 6")
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq) == ("deleted", 6)


async def test_removing_the_checkpoint_is_detected(db: Database) -> None:
    await _store(db, "n", 3, start=T0)
    await _store(db, "n", 3, start=T0 + timedelta(days=30))
    await db.audit.prune_before(T0 + timedelta(days=1), sign=SIGN)
    await _sql(db, "DELETE FROM audit_checkpoints")
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq) == ("deleted", 1)


async def test_checkpoints_cross_check_a_truncated_chain(db: Database) -> None:
    await _store(db, "node-b", 4)
    b_head = await db.audit.last_for_node("node-b")
    assert b_head is not None
    head = ChainHead()
    checkpoint = Event(
        type=EventTypes.CHECKPOINT,
        outcome="info",
        data={"heads": {"node-b": {"seq": b_head.seq, "hash": b_head.hash}}},
        occurred_at=T0,
    )
    await db.audit.append_batch(chain_events("node-a", head, [checkpoint]))
    assert (await verify(db.audit, authenticator=AUTH)).intact
    # The tail of node-b's chain is cut: no gap inside it, but node-a's checkpoint saw seq 4.
    await _sql(db, "DELETE FROM audit_events WHERE node_id = 'node-b' AND seq >= 3")
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.node_id, finding.kind, finding.seq) == ("node-b", "deleted", 3)
    assert finding.detail == (
        "node node-a's checkpoint (seq 1) saw seq 4 of node-b, but the chain ends at seq 2 "
        "(records removed from its end)"
    )
    # A whole node's chain removed.
    await _sql(db, "DELETE FROM audit_events WHERE node_id = 'node-b'")
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.node_id, finding.kind, finding.seq) == ("node-b", "deleted", 4)


# -- authenticated checkpoints ---------------------------------------------------------


async def _insert_checkpoint(db: Database, record: AuditEvent, *, mac: str | None) -> None:
    """A checkpoint row written with SQL, as someone with database access (not the key) would."""
    from bastion.storage.sql import schema

    async with db.transaction(write=True) as conn:
        await conn.execute(
            sa.insert(schema.audit_checkpoints).values(
                node_id=record.node_id,
                seq=record.seq,
                hash=record.hash,
                occurred_at=record.occurred_at,
                pruned=0,
                created_at=record.occurred_at,
                mac=mac,
            )
        )


async def test_forged_checkpoint_at_the_head_does_not_blind_verification(db: Database) -> None:
    records = await _store(db, "n", 5)
    await _sql(db, "UPDATE audit_events SET reason = 'edited' WHERE node_id = 'n' AND seq = 3")
    await _insert_checkpoint(db, records[-1], mac=None)
    report = await inspect(db.audit, authenticator=AUTH)
    assert [(f.kind, f.seq) for f in report.findings] == [("unauthenticated", 5), ("modified", 3)]
    assert report.findings[0].detail.endswith(
        "it has no MAC (written before bastion signed checkpoints: check the log, then run "
        "`bastion audit verify --reanchor`)"
    )
    with pytest.raises(AuditChainBrokenError):
        await verify(db.audit, authenticator=AUTH)


async def test_checkpoint_with_a_copied_or_foreign_mac_is_unauthenticated(db: Database) -> None:
    await _store(db, "n", 3, start=T0)
    records = await _store(db, "n", 3, start=T0 + timedelta(days=30))
    (real,) = await db.audit.prune_before(T0 + timedelta(days=1), sign=SIGN)
    # The authentic MAC of the prune checkpoint, copied onto a forged one at the head.
    await _insert_checkpoint(db, records[-1], mac=real.mac)
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq) == ("unauthenticated", 6)
    assert finding.detail.endswith(
        "its MAC does not match (forged, or altered after it was written)"
    )
    # A MAC made under another master key does not verify either.
    other = checkpoint_authenticator(Keyring([MasterKey.generate()]))
    findings = (await inspect(db.audit, authenticator=other)).findings
    assert [(f.kind, f.seq) for f in findings] == [
        ("unauthenticated", 3),
        ("unauthenticated", 6),
        ("deleted", 1),  # without a trusted anchor the pruned records are missing
    ]
    assert "master key that is not loaded" in findings[0].detail


async def test_record_still_stored_at_an_anchor_must_be_the_one_it_anchored(
    db: Database,
) -> None:
    records = await _store(db, "n", 5)
    head = records[-1]
    await _insert_checkpoint(db, head, mac=SIGN(_as_checkpoint(head)))
    assert (await verify(db.audit, authenticator=AUTH)).intact
    # The head is rewritten with a recomputed hash: nothing after it links to it, but the
    # authentic checkpoint anchored the original.
    edited = compute_hash(replace(head, reason="edited"))
    await _sql(
        db,
        "UPDATE audit_events SET reason = 'edited', hash = :h WHERE node_id = 'n' AND seq = 5",
        h=edited,
    )
    (finding,) = (await inspect(db.audit, authenticator=AUTH)).findings
    assert (finding.kind, finding.seq) == ("modified", 5)
    assert finding.detail.startswith("the record was changed after checkpoint ")


def _as_checkpoint(record: AuditEvent) -> AuditCheckpoint:
    return AuditCheckpoint(
        node_id=record.node_id, seq=record.seq, hash=record.hash, occurred_at=record.occurred_at
    )


async def test_unsigned_checkpoints_fail_until_reanchored(db: Database) -> None:
    await _store(db, "n", 3, start=T0)
    await _store(db, "n", 3, start=T0 + timedelta(days=30))
    await db.audit.prune_before(T0 + timedelta(days=1), sign=SIGN)
    await _sql(db, "UPDATE audit_checkpoints SET mac = NULL")  # as written before 0004
    findings = (await inspect(db.audit, authenticator=AUTH)).findings
    # Not an anchor: the pruned records count as missing too.
    assert [(f.kind, f.seq) for f in findings] == [("unauthenticated", 3), ("deleted", 1)]

    # Tampering anywhere: --reanchor signs nothing.
    await _sql(db, "UPDATE audit_events SET reason = 'x' WHERE node_id = 'n' AND seq = 5")
    report, signed = await reanchor(db.audit, authenticator=AUTH)
    assert signed == 0 and [(f.kind, f.seq) for f in report.findings] == [("modified", 5)]
    assert (await db.audit.checkpoints("n"))[0].mac is None
    await _sql(db, "UPDATE audit_events SET reason = 'invalid_token' WHERE seq = 5")

    report, signed = await reanchor(db.audit, authenticator=AUTH)
    assert report.intact and signed == 1
    assert (await verify(db.audit, authenticator=AUTH)).intact
    assert (await reanchor(db.audit, authenticator=AUTH))[1] == 0  # nothing left to sign


async def test_master_key_rotation_signs_checkpoints_again(db: Database) -> None:
    await _store(db, "n", 3, start=T0)
    await _store(db, "n", 3, start=T0 + timedelta(days=30))
    await db.audit.prune_before(T0 + timedelta(days=1), sign=SIGN)
    rotated = KEYRING.with_new_primary()
    new_only = checkpoint_authenticator(rotated.only_primary())
    (finding,) = (await inspect(db.audit, authenticator=new_only)).findings[:1]
    assert finding.kind == "unauthenticated"
    assert await resign_checkpoints(db.audit, checkpoint_authenticator(rotated)) == 1
    assert (await verify(db.audit, authenticator=new_only)).intact
    assert await resign_checkpoints(db.audit, checkpoint_authenticator(rotated)) == 0
