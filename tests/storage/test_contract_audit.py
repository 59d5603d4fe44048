"""Contract: the audit log (batches, unique node/seq, search, keyset pages), both backends."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bastion.storage import AuditEvent, ConflictError, Database


def _event(node: str, seq: int, at: datetime, **extra: object) -> AuditEvent:
    fields: dict[str, object] = {
        "node_id": node,
        "seq": seq,
        "occurred_at": at,
        "type": "gateway.deny",
        "outcome": "deny",
        "reason": "invalid_token",
        "request_id": f"req-{node}-{seq}",
        "ip": "198.51.100.4",
        "user_agent": "curl/8.5",
        "subject": "user-1",
        "route": "orders",
        "data": {"status": 401, "scopes": ["orders:read"]},
        "prev_hash": f"h{seq - 1}",
        "hash": f"h{seq}",
    }
    fields.update(extra)
    return AuditEvent(**fields)  # type: ignore[arg-type]


def _strip_id(event: AuditEvent) -> AuditEvent:
    from dataclasses import replace

    return replace(event, id=None)


async def test_append_batch_round_trips(db: Database, now: datetime) -> None:
    events = [_event("n1", i, now + timedelta(seconds=i)) for i in range(1, 4)]
    assert await db.audit.append_batch(events) == 3
    assert await db.audit.append_batch([]) == 0
    page = await db.audit.search(newest_first=False)
    assert [_strip_id(e) for e in page.items] == events
    assert all(e.id is not None for e in page.items)
    last = await db.audit.last_for_node("n1")
    assert last is not None
    assert _strip_id(last) == events[-1]
    assert await db.audit.last_for_node("n2") is None


async def test_duplicate_node_seq_rejects_the_whole_batch(db: Database, now: datetime) -> None:
    await db.audit.append_batch([_event("n1", 1, now)])
    with pytest.raises(ConflictError) as info:
        await db.audit.append_batch([_event("n1", 2, now), _event("n1", 1, now)])
    assert info.value.detail == "an audit event with this node_id and seq already exists"
    chain = await db.audit.chain("n1")
    assert [e.seq for e in chain] == [1]  # seq 2 of the failed batch was not written
    # Another node may reuse the same seq.
    await db.audit.append_batch([_event("n2", 1, now)])


async def test_search_filters(db: Database, now: datetime) -> None:
    await db.audit.append_batch(
        [
            _event("n1", 1, now, subject="alice", type="login", outcome="success"),
            _event(
                "n1", 2, now + timedelta(minutes=1), subject="bob", type="login", outcome="failure"
            ),
            _event("n1", 3, now + timedelta(minutes=2), subject="alice", outcome="deny"),
            _event(
                "n2",
                1,
                now + timedelta(minutes=3),
                subject="alice",
                type="login",
                outcome="failure",
            ),
        ]
    )

    async def seqs(**filters: object) -> list[tuple[str, int]]:
        page = await db.audit.search(newest_first=False, **filters)  # type: ignore[arg-type]
        return [(e.node_id, e.seq) for e in page.items]

    assert await seqs(subject="alice") == [("n1", 1), ("n1", 3), ("n2", 1)]
    assert await seqs(type="login", outcome="failure") == [("n1", 2), ("n2", 1)]
    assert await seqs(since=now + timedelta(minutes=1)) == [("n1", 2), ("n1", 3), ("n2", 1)]
    assert await seqs(until=now + timedelta(minutes=1)) == [("n1", 1)]
    assert await seqs(
        since=now + timedelta(minutes=1), until=now + timedelta(minutes=3), subject="alice"
    ) == [("n1", 3)]
    assert await seqs(node_id="n2") == [("n2", 1)]


async def test_keyset_pagination_newest_first(db: Database, now: datetime) -> None:
    await db.audit.append_batch([_event("n1", i, now + timedelta(seconds=i)) for i in range(7)])
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await db.audit.search(limit=3, cursor=cursor)
        seen.extend(e.seq for e in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [6, 5, 4, 3, 2, 1, 0]
    assert pages == 3
    # Events appended after the first page don't shift later pages (keyset, not offset).
    first = await db.audit.search(limit=3)
    await db.audit.append_batch([_event("n1", 7, now + timedelta(seconds=7))])
    second = await db.audit.search(limit=3, cursor=first.next_cursor)
    assert [e.seq for e in second.items] == [3, 2, 1]


async def test_keyset_pagination_oldest_first(db: Database, now: datetime) -> None:
    await db.audit.append_batch([_event("n1", i, now) for i in range(5)])
    first = await db.audit.search(limit=2, newest_first=False)
    second = await db.audit.search(limit=2, newest_first=False, cursor=first.next_cursor)
    third = await db.audit.search(limit=2, newest_first=False, cursor=second.next_cursor)
    assert [e.seq for p in (first, second, third) for e in p.items] == [0, 1, 2, 3, 4]
    assert third.next_cursor is None


async def test_chain_returns_a_node_in_seq_order(db: Database, now: datetime) -> None:
    await db.audit.append_batch([_event("n1", 3, now), _event("n1", 1, now), _event("n1", 2, now)])
    await db.audit.append_batch([_event("n2", 1, now)])
    assert [e.seq for e in await db.audit.chain("n1")] == [1, 2, 3]
    assert [e.seq for e in await db.audit.chain("n1", after_seq=1)] == [2, 3]
    assert [e.seq for e in await db.audit.chain("n1", limit=1)] == [1]
    last = await db.audit.last_for_node("n1")
    assert last is not None
    assert last.seq == 3
