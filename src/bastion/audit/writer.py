"""The audit writer: drains the :class:`~bastion.audit.events.Auditor` queue into the chain.

One writer per process. It takes queued events in batches (``batch_size``,
at least every ``flush_interval`` seconds, sooner when the auditor nudges),
chains them after this node's head (``audit/chain.py``), appends each batch in
one transaction, then hands it to the extra sinks.

Nothing lost, nothing duplicated: a batch is chained once and kept until the
database accepted it. While the database is down the writer retries with
exponential backoff (the auditor's bounded queue buffers new events; what
overflows is counted and reported as an ``audit.dropped`` event). A retry
after a commit whose acknowledgement was lost meets the unique ``(node_id,
seq)`` and is recognised as already written. Another process writing under
the same ``node_id`` (a misconfiguration) is logged and the batch re-chained
after its records.

Besides the queue the writer emits closed minutes of the gateway's traffic
counter as ``gateway.traffic`` events, an ``audit.checkpoint`` every
``checkpoint_interval`` seconds after new records (the heads of every node's
chain, for cross-checks) and, with a ``retention``, prunes old records every
``prune_interval`` seconds, each cut recorded as a checkpoint signed by
``sign_checkpoint`` (``audit.chain.checkpoint_signer`` of the master keyring).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bastion.audit.aggregates import MinuteCount
from bastion.audit.chain import ChainHead, chain_events, rechain, timestamp
from bastion.audit.events import Auditor, Event, EventTypes
from bastion.audit.sinks import Sink
from bastion.storage import AuditCheckpoint, AuditEvent, ConflictError, Database
from bastion.storage.models import utcnow

__all__ = ["AuditWriter"]

log = logging.getLogger("bastion.audit.writer")


class AuditWriter:
    """Writes this node's audit chain: see the module docstring."""

    def __init__(
        self,
        auditor: Auditor,
        db: Database,
        node_id: str,
        *,
        sinks: Sequence[Sink] = (),
        batch_size: int = 500,
        flush_interval: float = 1.0,
        checkpoint_interval: float = 300.0,
        retention: float | None = None,
        sign_checkpoint: Callable[[AuditCheckpoint], str] | None = None,
        prune_interval: float = 3600.0,
        retry_initial: float = 0.2,
        retry_max: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.auditor = auditor
        self.repo = db.audit
        self.node_id = node_id
        self.sinks = tuple(sinks)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.checkpoint_interval = checkpoint_interval
        self.retention = retention
        self.sign_checkpoint = sign_checkpoint
        self.prune_interval = prune_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._clock = clock
        self._now = now
        self._head: ChainHead | None = None
        self._pending: list[AuditEvent] = []  # chained, not yet accepted by the database
        self._backlog: deque[Event] = deque()  # the writer's own events, before the queue's
        self._dropped_reported = 0
        self._wake = asyncio.Event()
        self._written_since_checkpoint = 0
        self._next_checkpoint = clock() + checkpoint_interval
        self._next_prune = clock() + min(prune_interval, 60.0)
        self.written = 0
        self.failures = 0

    # -- the loop ------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Drain the queue until ``stop`` is set (then call :meth:`flush`)."""
        self.auditor.set_wakeup(self._wake.set)
        delay = self.retry_initial
        try:
            while not stop.is_set():
                await _wait_any(stop, self._wake, self.flush_interval)
                self._wake.clear()
                if stop.is_set():
                    break
                try:
                    await self._periodic()
                    await self._drain()
                except Exception as exc:  # the database is down, or a sink broke: retry
                    self.failures += 1
                    log.warning(
                        "audit: cannot write %d event(s) yet (%s); retrying in %.1fs",
                        len(self._pending) + len(self.auditor.queue),
                        type(exc).__name__,
                        delay,
                    )
                    await _wait_any(stop, None, delay)
                    delay = min(delay * 2, self.retry_max)
                else:
                    delay = self.retry_initial
        finally:
            self.auditor.set_wakeup(None)

    async def flush(self, *, within: float = 10.0) -> None:
        """Write everything queued, this minute's traffic counts and a checkpoint (shutdown).

        Retries for up to ``within`` seconds; what still cannot be written is
        logged with its count (never silently lost).
        """
        deadline = self._clock() + within
        delay = self.retry_initial
        final_checkpoint = False
        while True:
            try:
                self._collect_traffic(everything=True)
                await self._drain()
                if self._written_since_checkpoint and not final_checkpoint:
                    final_checkpoint = True
                    await self._queue_checkpoint()
                    await self._drain()
                return
            except Exception as exc:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    lost = len(self._pending) + len(self._backlog) + len(self.auditor.queue)
                    log.error(
                        "audit: %d event(s) could not be written before shutdown (%s)",
                        lost,
                        type(exc).__name__,
                    )
                    return
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, self.retry_max)

    # -- steps ---------------------------------------------------------------

    async def _periodic(self) -> None:
        self._collect_traffic(everything=False)
        now = self._clock()
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + self.checkpoint_interval
            if self._written_since_checkpoint:
                await self._queue_checkpoint()
        if self.retention is not None and now >= self._next_prune:
            self._next_prune = now + self.prune_interval
            await self.prune()

    async def prune(self) -> int:
        """Delete records older than the retention (checkpoints keep the chains verifiable)."""
        if self.retention is None:
            return 0
        if self.sign_checkpoint is None:
            raise RuntimeError("an audit writer with a retention needs sign_checkpoint")
        checkpoints = await self.repo.prune_before(
            self._now() - timedelta(seconds=self.retention), sign=self.sign_checkpoint
        )
        pruned = sum(c.pruned for c in checkpoints)
        if pruned:
            log.info("audit: pruned %d record(s) older than the retention", pruned)
        return pruned

    def _collect_traffic(self, *, everything: bool) -> None:
        traffic = self.auditor.traffic
        counts = traffic.take_all() if everything else traffic.take_closed()
        self._backlog.extend(_traffic_event(count) for count in counts)

    async def _queue_checkpoint(self) -> None:
        head = await self._load_head()
        heads: dict[str, Any] = {}
        for node in await self.repo.nodes():
            if node == self.node_id:
                continue
            last = await self.repo.last_for_node(node)
            if last is not None:
                heads[node] = {"seq": last.seq, "hash": last.hash}
        heads[self.node_id] = {"seq": head.seq, "hash": head.hash}
        self._backlog.append(
            Event(type=EventTypes.CHECKPOINT, outcome="info", data={"heads": heads})
        )
        self._written_since_checkpoint = 0

    def _next_batch(self) -> list[Event]:
        dropped = self.auditor.dropped - self._dropped_reported
        if dropped > 0:
            self._dropped_reported += dropped
            self._backlog.appendleft(
                Event(
                    type=EventTypes.DROPPED,
                    outcome="failure",
                    reason="queue_full",
                    data={"count": dropped},
                )
            )
        batch: list[Event] = []
        backlog = self._backlog
        while backlog and len(batch) < self.batch_size:
            batch.append(backlog.popleft())
        if len(batch) < self.batch_size:
            batch.extend(self.auditor.take(self.batch_size - len(batch)))
        return batch

    async def _drain(self) -> None:
        while True:
            if not self._pending:
                head = await self._load_head()
                batch = self._next_batch()
                if not batch:
                    return
                self._pending = chain_events(self.node_id, head, batch)
            written = await self._store(self._pending)
            self._pending = []
            self._head = ChainHead(written[-1].seq, written[-1].hash)
            self.written += len(written)
            self._written_since_checkpoint += len(written)
            for sink in self.sinks:
                try:
                    await sink.write(written)
                except Exception:
                    log.exception("audit: sink %r failed; its batch is skipped", sink)

    async def _store(self, records: list[AuditEvent]) -> list[AuditEvent]:
        try:
            await self.repo.append_batch(records)
            return records
        except ConflictError:
            last = await self.repo.last_for_node(self.node_id)
            if last is not None and last.seq == records[-1].seq and last.hash == records[-1].hash:
                return records  # an earlier attempt committed; its answer was lost
            head = await self._load_head(reload=True)
            log.error(
                "audit: another process writes node_id %r (chain now at seq %d) — give every "
                "process its own node_id; re-chaining %d event(s) after it",
                self.node_id,
                head.seq,
                len(records),
            )
            self._pending = rechain(self.node_id, head, records)
            await self.repo.append_batch(self._pending)
            return self._pending

    async def _load_head(self, *, reload: bool = False) -> ChainHead:
        if self._head is not None and not reload:
            return self._head
        last = await self.repo.last_for_node(self.node_id)
        anchor = await self.repo.latest_checkpoint(self.node_id)
        head = ChainHead()
        if anchor is not None:
            head = ChainHead(anchor.seq, anchor.hash)
        if last is not None and last.seq > head.seq:
            head = ChainHead(last.seq, last.hash)
        self._head = head
        return head


def _traffic_event(count: MinuteCount) -> Event:
    return Event(
        type=EventTypes.GATEWAY_TRAFFIC,
        outcome="success",
        route=count.route,
        key_id=count.principal_id if count.principal == "key" else None,
        client_id=count.principal_id if count.principal == "client" else None,
        subject=count.principal_id if count.principal == "subject" else None,
        data={
            "minute": timestamp(count.minute),
            "count": count.count,
            "principal": count.principal,
        },
    )


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event | None, seconds: float) -> None:
    """Return when ``stop`` (or ``wake``) is set, or after ``seconds``."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
