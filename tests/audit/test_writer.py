"""The audit writer: batches, chain continuity, shutdown flush, sinks, outages, conflicts."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from _support import tcp_proxy
from _support.waiting import wait_until_async
from bastion.audit.chain import checkpoint_authenticator, checkpoint_signer, verify
from bastion.audit.events import Auditor, EventTypes
from bastion.audit.sinks import JsonLinesSink, Sink
from bastion.audit.writer import AuditWriter
from bastion.crypto import Keyring, MasterKey
from bastion.storage import Database, migrate

KEYRING = Keyring([MasterKey.generate()])
AUTH = checkpoint_authenticator(KEYRING)


def _record(auditor: Auditor, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        auditor.record(
            EventTypes.GATEWAY_DENIED,
            "denied",
            reason="invalid_token",
            request_id=f"req-{i}",
            ip="198.51.100.9",
            route="orders",
        )


async def _events(db: Database, type: str | None = None) -> list[str | None]:
    """request ids of every stored event of ``type``, in chain order."""
    out: list[str | None] = []
    for node in await db.audit.nodes():
        for record in await db.audit.chain(node, limit=1000):
            if type is None or record.type == type:
                out.append(record.request_id)
    return out


async def test_batches_chain_and_continue_across_writers(db: Database) -> None:
    auditor = Auditor()
    writer = AuditWriter(auditor, db, "node-1", batch_size=100, flush_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    _record(auditor, 450)
    await wait_until_async(lambda: writer.written >= 450, "450 written", timeout=30)
    stop.set()
    await task
    await writer.flush()  # writes the final checkpoint
    ids = await _events(db, EventTypes.GATEWAY_DENIED)
    assert ids == [f"req-{i}" for i in range(450)]
    # A later process with the same node id continues the chain.
    second = AuditWriter(Auditor(), db, "node-1")
    _record(second.auditor, 3, start=450)
    await second.flush()
    last = await db.audit.last_for_node("node-1")
    assert last is not None and last.type == EventTypes.CHECKPOINT
    report = await verify(db.audit, authenticator=AUTH)
    assert report.nodes[0].last_seq == 450 + 1 + 3 + 1  # two checkpoints
    assert (await _events(db, EventTypes.GATEWAY_DENIED))[-3:] == ["req-450", "req-451", "req-452"]


async def test_flush_writes_traffic_counts_and_a_checkpoint_of_every_head(db: Database) -> None:
    other = AuditWriter(Auditor(), db, "node-2")
    _record(other.auditor, 2)
    await other.flush()
    auditor = Auditor()
    writer = AuditWriter(auditor, db, "node-1")
    auditor.traffic.hit("orders", "key", "k1")
    auditor.traffic.hit("orders", "key", "k1")
    auditor.traffic.hit("orders", "client", "c1")
    _record(auditor, 1)
    await writer.flush()
    chain = await db.audit.chain("node-1")
    # The writer's own events (traffic counts) go before the queue's in a batch.
    assert [r.type for r in chain] == [
        EventTypes.GATEWAY_TRAFFIC,
        EventTypes.GATEWAY_TRAFFIC,
        EventTypes.GATEWAY_DENIED,
        EventTypes.CHECKPOINT,
    ]
    traffic = {
        (r.key_id, r.client_id): r.data["count"] for r in chain if r.type.endswith("traffic")
    }
    assert traffic == {("k1", None): 2, (None, "c1"): 1}
    checkpoint = chain[-1]
    node2 = await db.audit.last_for_node("node-2")
    assert node2 is not None
    assert checkpoint.data["heads"]["node-2"] == {"seq": node2.seq, "hash": node2.hash}
    assert checkpoint.data["heads"]["node-1"] == {"seq": 3, "hash": chain[2].hash}
    assert (await verify(db.audit, authenticator=AUTH)).intact


async def test_a_full_queue_is_reported_as_a_dropped_event(db: Database) -> None:
    auditor = Auditor(max_queue=5)
    _record(auditor, 8)
    assert auditor.dropped == 3
    writer = AuditWriter(auditor, db, "n")
    await writer.flush()
    chain = await db.audit.chain("n")
    assert chain[0].type == EventTypes.DROPPED
    assert (chain[0].outcome, chain[0].reason, chain[0].data) == (
        "failure",
        "queue_full",
        {"count": 3},
    )
    assert [r.request_id for r in chain[1:6]] == [f"req-{i}" for i in range(5)]


async def test_json_lines_sink_gets_every_committed_event(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    sink = JsonLinesSink(path)
    assert isinstance(sink, Sink)
    auditor = Auditor()
    writer = AuditWriter(auditor, db, "n", sinks=[sink], batch_size=2)
    auditor.record(EventTypes.LOGIN, "failure", reason="bad_password", user_agent="ua\x1b[1m")
    _record(auditor, 2)
    await writer.flush()
    lines = path.read_bytes().splitlines()
    docs = [orjson.loads(line) for line in lines]
    stored = await db.audit.chain("n")
    assert [d["hash"] for d in docs] == [r.hash for r in stored]
    assert docs[0]["user_agent"] == "ua\\x1b[1m"
    assert docs[0]["seq"] == 1 and docs[0]["node_id"] == "n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


class BrokenSink:
    def __init__(self) -> None:
        self.calls = 0

    async def write(self, events: object) -> None:
        self.calls += 1
        raise OSError("disk full")


async def test_a_failing_sink_never_blocks_the_database(db: Database) -> None:
    sink = BrokenSink()
    auditor = Auditor()
    writer = AuditWriter(auditor, db, "n", sinks=[sink])
    _record(auditor, 3)
    await writer.flush()
    assert sink.calls == 2  # the events, then the checkpoint
    assert len(await db.audit.chain("n")) == 4


async def test_chain_continues_from_a_checkpoint_after_everything_was_pruned(db: Database) -> None:
    from datetime import timedelta

    from bastion.storage.models import utcnow

    first = AuditWriter(Auditor(), db, "n")
    _record(first.auditor, 3)
    await first.flush()
    await db.audit.prune_before(utcnow() + timedelta(seconds=1), sign=checkpoint_signer(KEYRING))
    assert await db.audit.last_for_node("n") is None
    second = AuditWriter(Auditor(), db, "n")
    _record(second.auditor, 2)
    await second.flush()
    assert [r.seq for r in await db.audit.chain("n")] == [5, 6, 7]
    assert (await verify(db.audit, authenticator=AUTH)).intact


async def test_retention_prune_runs_in_the_writer(db: Database) -> None:
    from datetime import timedelta

    from bastion.storage.models import utcnow

    old = AuditWriter(Auditor(), db, "n", now=lambda: utcnow() + timedelta(days=400))
    _record(old.auditor, 2)
    await old.flush()
    writer = AuditWriter(
        Auditor(),
        db,
        "n",
        retention=365 * 86400,
        sign_checkpoint=checkpoint_signer(KEYRING),
        now=lambda: utcnow() + timedelta(days=400),
    )
    assert await writer.prune() == 3  # 2 events + the checkpoint
    (checkpoint,) = await db.audit.checkpoints("n")
    assert checkpoint.mac is not None and checkpoint.mac.startswith("bmac1.")
    assert await db.audit.chain("n") == ()
    assert (await verify(db.audit, authenticator=AUTH)).intact


async def test_another_process_with_the_same_node_id_is_rechained(db: Database) -> None:
    a = AuditWriter(Auditor(), db, "same")
    b = AuditWriter(Auditor(), db, "same")
    await b.flush()  # b has read the (empty) head
    _record(a.auditor, 3)
    await a.flush()
    _record(b.auditor, 2, start=3)
    await b.flush()
    ids = await _events(db, EventTypes.GATEWAY_DENIED)
    assert ids == ["req-0", "req-1", "req-2", "req-3", "req-4"]
    assert (await verify(db.audit, authenticator=AUTH)).intact


async def test_a_lost_commit_acknowledgement_is_not_written_twice(db: Database) -> None:
    from bastion.audit.chain import ChainHead, chain_events

    auditor = Auditor()
    writer = AuditWriter(auditor, db, "n")
    _record(auditor, 2)
    batch = auditor.take(10)
    writer._pending = chain_events("n", ChainHead(), batch)
    await db.audit.append_batch(writer._pending)  # committed, but the writer never heard
    await writer.flush()
    assert [r.request_id for r in await db.audit.chain("n")] == ["req-0", "req-1", None]
    assert (await verify(db.audit, authenticator=AUTH)).intact


@pytest.mark.postgres
async def test_database_outage_loses_nothing(postgres_url: str) -> None:
    await migrate(postgres_url)
    parts = urlsplit(postgres_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    with tcp_proxy(host, port) as proxy:
        netloc = parts.netloc.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
        if netloc == parts.netloc:
            netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
        db = await Database.connect(urlunsplit(parts._replace(netloc=netloc)))
        try:
            auditor = Auditor()
            writer = AuditWriter(
                auditor, db, "n", batch_size=50, flush_interval=0.05, retry_max=0.5
            )
            stop = asyncio.Event()
            task = asyncio.create_task(writer.run(stop))
            _record(auditor, 100)
            await wait_until_async(lambda: writer.written >= 100, "100 written", timeout=30)
            proxy.cut()
            _record(auditor, 200, start=100)
            await wait_until_async(lambda: writer.failures >= 2, "2 failures", timeout=30)
            assert writer.written < 300
            proxy.restore()
            await wait_until_async(lambda: writer.written >= 300, "300 written", timeout=30)
            stop.set()
            await task
            await writer.flush()
            ids = await _events(db, EventTypes.GATEWAY_DENIED)
            assert ids == [f"req-{i}" for i in range(300)]  # each once, in order
            assert (await verify(db.audit, authenticator=AUTH)).intact
        finally:
            await db.close()
