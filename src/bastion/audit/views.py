"""The JSON document of a stored audit event (admin API, ``--json``, JSON-lines sink)."""

from __future__ import annotations

from typing import Any

from bastion.audit.chain import timestamp
from bastion.storage import AuditEvent

__all__ = ["event_view"]


def event_view(event: AuditEvent) -> dict[str, Any]:
    """Every member of ``event`` as JSON types (time as ``…Z`` with microseconds)."""
    return {
        "id": event.id,
        "node_id": event.node_id,
        "seq": event.seq,
        "occurred_at": timestamp(event.occurred_at),
        "type": event.type,
        "outcome": event.outcome,
        "reason": event.reason,
        "request_id": event.request_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "subject": event.subject,
        "client_id": event.client_id,
        "key_id": event.key_id,
        "route": event.route,
        "data": event.data,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
