"""Contract: audit pruning and checkpoints (nodes, prune_before, checkpoints), both backends."""

from __future__ import annotations

from datetime import datetime, timedelta

from bastion.storage import AuditCheckpoint, AuditEvent, Database


def _sign(checkpoint: AuditCheckpoint) -> str:
    return f"mac:{checkpoint.node_id}:{checkpoint.seq}"


def _event(node: str, seq: int, at: datetime) -> AuditEvent:
    return AuditEvent(
        node_id=node,
        seq=seq,
        occurred_at=at,
        type="gateway.denied",
        outcome="denied",
        prev_hash=f"h{seq - 1}",
        hash=f"h{seq}",
    )


async def test_nodes_lists_nodes_with_events_or_checkpoints(db: Database, now: datetime) -> None:
    assert await db.audit.nodes() == ()
    await db.audit.append_batch([_event("b", 1, now), _event("a", 1, now), _event("a", 2, now)])
    assert await db.audit.nodes() == ("a", "b")
    await db.audit.prune_before(now + timedelta(seconds=1), sign=_sign)
    assert await db.audit.nodes() == ("a", "b")  # known through their checkpoints


async def test_prune_deletes_old_prefix_per_node_and_stores_checkpoints(
    db: Database, now: datetime
) -> None:
    old, new = now - timedelta(days=10), now
    await db.audit.append_batch(
        [_event("a", 1, old), _event("a", 2, old), _event("a", 3, new), _event("b", 1, new)]
    )
    written = await db.audit.prune_before(now - timedelta(days=1), sign=_sign)
    assert len(written) == 1
    (checkpoint,) = written
    assert checkpoint.id is not None
    assert (checkpoint.node_id, checkpoint.seq, checkpoint.hash, checkpoint.pruned) == (
        "a",
        2,
        "h2",
        2,
    )
    assert checkpoint.occurred_at == old
    assert checkpoint.mac == "mac:a:2"  # signed before it was stored
    assert [e.seq for e in await db.audit.chain("a")] == [3]
    assert [e.seq for e in await db.audit.chain("b")] == [1]
    assert await db.audit.checkpoints("a") == (checkpoint,)
    assert await db.audit.latest_checkpoint("a") == checkpoint
    assert await db.audit.latest_checkpoint("b") is None
    assert (
        await db.audit.prune_before(now - timedelta(days=1), sign=_sign) == ()
    )  # nothing left to prune


async def test_later_prunes_add_checkpoints_and_the_newest_is_the_anchor(
    db: Database, now: datetime
) -> None:
    await db.audit.append_batch([_event("a", i, now + timedelta(minutes=i)) for i in range(1, 6)])
    await db.audit.prune_before(now + timedelta(minutes=2, seconds=1), sign=_sign)
    await db.audit.prune_before(now + timedelta(minutes=5, seconds=1), sign=_sign)
    checkpoints = await db.audit.checkpoints("a")
    assert [(c.seq, c.pruned) for c in checkpoints] == [(2, 2), (5, 3)]
    latest = await db.audit.latest_checkpoint("a")
    assert isinstance(latest, AuditCheckpoint) and latest.seq == 5 and latest.hash == "h5"
    assert await db.audit.last_for_node("a") is None


async def test_set_checkpoint_mac(db: Database, now: datetime) -> None:
    await db.audit.append_batch([_event("a", 1, now)])
    (checkpoint,) = await db.audit.prune_before(now + timedelta(seconds=1), sign=_sign)
    assert checkpoint.id is not None
    await db.audit.set_checkpoint_mac(checkpoint.id, "other")
    (stored,) = await db.audit.checkpoints("a")
    assert stored.mac == "other" and stored.seq == checkpoint.seq
