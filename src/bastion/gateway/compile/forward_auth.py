"""The ``forward_auth`` section of the table: how the native core serves ``/auth/verify``.

``{"headers": "nginx" | "forwarded"}`` (``forward_auth.headers``: the header family
the original request is read from, :mod:`bastion.http.endpoints.forward_auth`). With
tracing on, the native core traces a decision as Python does (``native/src/tracing.rs``:
a span with ``bastion.door = forward_auth``, the judged request's method, route and path).
"""

from __future__ import annotations

from typing import Any

from bastion.settings import Settings

__all__ = ["table_section"]


def table_section(settings: Settings) -> dict[str, Any]:
    """The forward-auth section."""
    return {"headers": settings.forward_auth.headers}
