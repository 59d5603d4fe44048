"""What CLI commands that manage stored state open: database, master keyring, shared state.

Commands run beside (or without) a serving bastion: they talk to the same
database and, for cache invalidation, publish on the same shared state, so a
running server sees their changes at once (e.g. a disabled client).
"""

from __future__ import annotations

import importlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from bastion.audit.events import Auditor, Event
from bastion.crypto import Keyring
from bastion.settings import Settings
from bastion.storage import ConflictError, Database, migrate
from bastion.storage.shared import SharedState, open_shared_state

T = TypeVar("T")


@dataclass
class Stores:
    """The stores a management command works on."""

    settings: Settings
    db: Database
    keyring: Keyring
    shared: SharedState


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """Open the database (migrating SQLite, as ``serve`` does), keyring and shared state.

    Raises the same one-line ``BastionError``s as ``serve`` when one is unusable.
    """
    from bastion.runtime import ensure_data_dir, open_keyring, uses_data_dir

    if uses_data_dir(settings):
        ensure_data_dir(settings.data_dir)
    keyring = open_keyring(settings)
    url = settings.storage_url
    if url.startswith("sqlite"):
        await migrate(url)
    db = await Database.connect(url, pool_size=2)
    try:
        if not url.startswith("sqlite"):
            await db.check_schema()
        shared = await open_shared_state(settings.shared.url, key_prefix=settings.shared.key_prefix)
        try:
            yield Stores(settings=settings, db=db, keyring=keyring, shared=shared)
        finally:
            await shared.close()
    finally:
        await db.close()


def with_stores(settings: Settings, work: Callable[[Stores], Awaitable[T]]) -> T:
    """Run ``work(stores)`` on the opened stores, closing them afterwards (blocking)."""
    from bastion.cli.app import run

    async def main() -> T:
        async with open_stores(settings) as stores:
            return await work(stores)

    return run(main())


def cli_node_id() -> str:
    """The audit node id of CLI commands on this machine: ``cli:<host name>``."""
    return f"cli:{socket.gethostname()}"


async def record_cli_events(db: Database, events: Sequence[Event]) -> int:
    """Write the lifecycle events of one CLI command to the audit log; return how many.

    The events go through an :class:`~bastion.audit.events.Auditor`, as on the
    server. When the audit writer (``bastion.audit.writer.AuditWriter``) is
    installed it chains and writes them; otherwise they are appended unchained
    under node ``cli:<host>``, ``seq`` continuing from the node's last event.
    """
    if not events:
        return 0
    auditor = Auditor()
    for event in events:
        auditor.emit(event)
    writer_class = _audit_writer_class()
    if writer_class is not None:
        writer = writer_class(db, auditor, node_id=cli_node_id())
        await writer.flush()
        return len(events)
    queued = auditor.take(len(events))
    for attempt in range(3):
        try:
            return await _append_unchained(db, queued)
        except ConflictError:
            # Another command on this host took the same sequence numbers first.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _audit_writer_class() -> Any:
    try:
        module = importlib.import_module("bastion.audit.writer")
    except ImportError:
        return None
    return getattr(module, "AuditWriter", None)


async def _append_unchained(db: Database, events: Sequence[Event]) -> int:
    from bastion.storage import AuditEvent

    node_id = cli_node_id()
    last = await db.audit.last_for_node(node_id)
    first_seq = 0 if last is None else last.seq + 1
    records = [
        AuditEvent(
            node_id=node_id,
            seq=first_seq + offset,
            occurred_at=event.occurred_at,
            type=event.type,
            outcome=event.outcome,
            reason=event.reason,
            request_id=event.request_id,
            ip=event.ip,
            user_agent=event.user_agent,
            subject=event.subject,
            client_id=event.client_id,
            key_id=event.key_id,
            route=event.route,
            data=dict(event.data),
        )
        for offset, event in enumerate(events)
    ]
    return await db.audit.append_batch(records)
