"""Where chained audit events go besides the database: the :class:`Sink` protocol.

The writer (``audit/writer.py``) hands every batch it has committed to the
database to each sink, in order, once. A sink that raises is logged and the
batch is not offered to it again (the database stays the source of truth); a
sink that must not lose events (a webhook) keeps its own queue and retries.

:class:`JsonLinesSink` appends one JSON document per event to a file (mode
0600) and fsyncs after every batch.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import orjson

from bastion.audit.views import event_view
from bastion.files import write_durably
from bastion.storage import AuditEvent

__all__ = ["JsonLinesSink", "Sink"]


@runtime_checkable
class Sink(Protocol):
    """A destination for chained audit events (committed to the database already)."""

    async def write(self, events: Sequence[AuditEvent]) -> None:
        """Deliver ``events`` (in chain order); raise on failure."""
        ...


class JsonLinesSink:
    """Appends events as JSON lines (the :func:`~bastion.audit.views.event_view` document).

    Each batch is written with one ``write`` and ``fsync``-ed before
    :meth:`write` returns. Raises ``OSError`` when the file cannot be written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"JsonLinesSink({str(self.path)!r})"

    async def write(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        payload = b"".join(orjson.dumps(event_view(event)) + b"\n" for event in events)
        async with self._lock:
            await asyncio.to_thread(self._append, payload)

    def _append(self, payload: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            write_durably(fd, payload)
        finally:
            os.close(fd)
