"""The JSON document of a stored audit event (admin API, ``--json``, JSON-lines sink)."""

from __future__ import annotations

from typing import Any

from bastion.audit.chain import chained_fields
from bastion.storage import AuditEvent

__all__ = ["event_view"]


def event_view(event: AuditEvent) -> dict[str, Any]:
    """Every member of ``event`` as JSON types (time as ``…Z`` with microseconds)."""
    return {"id": event.id, **chained_fields(event), "hash": event.hash}
