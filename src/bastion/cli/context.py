"""What CLI commands that manage stored state open: database, master keyring, shared state.

Commands run beside (or without) a serving bastion: they talk to the same
database and, for cache invalidation, publish on the same shared state, so a
running server sees their changes at once (e.g. a disabled client).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from bastion.audit.events import Auditor, Event
from bastion.cli.running import run
from bastion.credentials.lifecycle import ChangeRecorder, collect
from bastion.crypto import Keyring
from bastion.errors import BastionError
from bastion.settings import Settings
from bastion.storage import Database, migrate
from bastion.storage.shared import SharedState, open_shared_state

T = TypeVar("T")
Ops = TypeVar("Ops")


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

    async def main() -> T:
        async with open_stores(settings) as stores:
            return await work(stores)

    return run(main())


def cli_node_id() -> str:
    """The audit node id of CLI commands on this machine: ``cli:<host name>``."""
    return f"cli:{socket.gethostname()}"


async def record_cli_events(db: Database, events: Sequence[Event]) -> int:
    """Write the lifecycle events of one CLI command to the audit log; return how many.

    The events go through an :class:`~bastion.audit.events.Auditor` and the
    :class:`~bastion.audit.writer.AuditWriter`, as on the server: chained under
    node ``cli:<host>`` (concurrent commands on one host are re-chained by the
    writer, never lost).
    """
    if not events:
        return 0
    from bastion.audit.writer import AuditWriter

    auditor = Auditor()
    for event in events:
        auditor.emit(event)
    await AuditWriter(auditor, db, cli_node_id()).flush()
    return len(events)


def run_operations(
    settings: Settings,
    operations: Callable[[Stores, ChangeRecorder], Ops],
    work: Callable[[Ops], Awaitable[T]],
    flags: Mapping[str, str] | None = None,
) -> T:
    """Run ``work`` on the ``operations`` of a credential, built on the opened stores.

    The one path of ``bastion keys|clients|signing-keys``: the lifecycle events the
    operations record (as ``cli:<user>``) are written to the audit log after ``work``
    succeeded; an error naming a field of the credential's spec (``…SpecError``) is
    reported as the command's flag for it (``flags``: field -> flag).
    """
    from bastion.audit.lifecycle import cli_actor
    from bastion.cli.output import name_flags

    async def run(stores: Stores) -> T:
        events: list[Event] = []
        result = await work(operations(stores, ChangeRecorder(cli_actor(), collect(events))))
        await record_cli_events(stores.db, events)
        return result

    try:
        return with_stores(settings, run)
    except BastionError as error:
        raise name_flags(error, flags or {}) from None
