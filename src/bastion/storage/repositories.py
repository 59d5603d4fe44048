"""The conventions of bastion's repositories, and the one interface code is typed against.

The repositories are the SQL classes of :mod:`bastion.storage.sql.repositories`, reached as
attributes of :class:`~bastion.storage.sql.Database` (``db.users``, ``db.api_keys`` …);
their methods document themselves. Conventions shared by every repository:

- ``create(record)`` stores a new record and returns it; a duplicate primary key
  or unique value raises :class:`~bastion.storage.errors.ConflictError`, a
  reference to a missing parent (e.g. a credential of an unknown user) raises
  :class:`~bastion.storage.errors.NotFoundError`.
- ``get(id)`` returns the record or raises ``NotFoundError``; ``find_*`` returns
  ``None`` when nothing matches (the natural shape for lookups by a presented
  secret, where "no match" is an ordinary outcome).
- ``update(id, **changes)`` changes exactly the named members and returns the
  updated record; unknown or immutable member names raise ``TypeError`` (a
  programming error); ``updated_at`` is set automatically where the record has
  one, unless given. Missing record: ``NotFoundError``.
- ``delete(id)`` removes the record or raises ``NotFoundError``.
- ``list(limit=, cursor=)`` is keyset-paginated and returns a
  :class:`~bastion.storage.models.Page`; a foreign cursor raises
  :class:`~bastion.storage.outcomes.InvalidCursorError`.
- Every method may raise :class:`~bastion.storage.errors.DatabaseUnavailableError`
  when the database cannot be reached.

:class:`AuditRepository` is the interface the audit hash chain's checks
(:mod:`bastion.audit.chain`) are written against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from bastion.storage.models import AuditCheckpoint, AuditEvent

__all__ = ["AuditRepository"]


class AuditRepository(Protocol):
    """The append-only audit log (one hash chain per node).

    Its writing, reading by chain and pruning; searching the log by its filters is
    the SQL repository's own (``db.audit.search``, documented there).
    """

    async def append_batch(self, events: Sequence[AuditEvent]) -> int:
        """Append events in ONE transaction; returns how many.

        A duplicate ``(node_id, seq)`` raises ``ConflictError`` and nothing of
        the batch is written.
        """
        ...

    async def last_for_node(self, node_id: str) -> AuditEvent | None:
        """The node's event with the highest ``seq``, or ``None``."""
        ...

    async def chain(
        self, node_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> tuple[AuditEvent, ...]:
        """A node's events with ``seq > after_seq`` in ``seq`` order (for chain checks)."""
        ...

    async def nodes(self) -> tuple[str, ...]:
        """Every node id with stored events or checkpoints, sorted."""
        ...

    async def prune_before(
        self, before: datetime, *, sign: Callable[[AuditCheckpoint], str]
    ) -> tuple[AuditCheckpoint, ...]:
        """Delete, per node, the records up to the last one that occurred before ``before``.

        In the same transaction as each node's delete, stores an
        :class:`AuditCheckpoint` (the seq and hash of the last deleted record),
        its ``mac`` set to ``sign(checkpoint)``, so the remaining chain still
        verifies. The newest checkpoint of a node stays the anchor; returns the
        checkpoints written (none: nothing old).
        """
        ...

    async def set_checkpoint_mac(self, checkpoint_id: int, mac: str) -> None:
        """Store ``mac`` as the authentication tag of checkpoint ``checkpoint_id``."""
        ...

    async def checkpoints(self, node_id: str) -> tuple[AuditCheckpoint, ...]:
        """The node's pruning checkpoints, oldest first."""
        ...

    async def latest_checkpoint(self, node_id: str) -> AuditCheckpoint | None:
        """The node's checkpoint with the highest ``seq`` (its chain's anchor), or ``None``."""
        ...
