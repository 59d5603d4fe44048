"""The ``forward_auth`` section of the table: how the native core serves ``/auth/verify``.

``{"headers": "nginx" | "forwarded"}`` (``forward_auth.headers``: the header family
the original request is read from, :mod:`bastion.http.endpoints.forward_auth`), or
``null`` when the decisions stay in Python: with tracing on (a decision is traced
like a proxied request, and the native core does not trace yet).
"""

from __future__ import annotations

from typing import Any

from bastion.settings.models import Settings

__all__ = ["table_section"]


def table_section(settings: Settings) -> dict[str, Any] | None:
    """The forward-auth section, or None when Python answers every decision."""
    if settings.tracing.enabled:
        return None
    return {"headers": settings.forward_auth.headers}
