"""The JSON description of a stored API key, as the CLI and the admin API show it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bastion.apikeys.state import api_key_status
from bastion.storage.models import ApiKey

__all__ = ["api_key_view", "iso"]


def iso(value: datetime | None) -> str | None:
    """``value`` in ISO 8601, or ``None``."""
    return value.isoformat() if value is not None else None


def api_key_view(key: ApiKey, now: datetime | None = None) -> dict[str, Any]:
    """The JSON-ready description of a key for listings (CLI, admin API).

    Holds the display prefix and never the key or its digest; ``status`` is
    :func:`~bastion.apikeys.state.api_key_status` at ``now`` (default: now).
    """
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "status": api_key_status(key, now),
        "owner_type": key.owner_type,
        "owner_id": key.owner_id,
        "scopes": list(key.scopes),
        "routes": list(key.routes),
        "expires_at": iso(key.expires_at),
        "rate_limits": [dict(limit) for limit in key.rate_limits],
        "ip_allow": list(key.ip_allow),
        "metadata": dict(key.metadata),
        "disabled": key.disabled,
        "revoked_at": iso(key.revoked_at),
        "rotated_from": key.rotated_from,
        "grace_until": iso(key.grace_until),
        "last_used_at": iso(key.last_used_at),
        "last_used_ip": key.last_used_ip,
        "created_at": iso(key.created_at),
        "updated_at": iso(key.updated_at),
    }
