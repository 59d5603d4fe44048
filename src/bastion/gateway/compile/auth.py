"""The ``auth`` section of a native route (placeholder: not native yet)."""

from __future__ import annotations

from typing import Any

from bastion.gateway.compile.common import Unsupported

__all__ = ["section"]


def section(route: Any, settings: Any) -> dict[str, Any] | list[Any] | Unsupported:
    """The JSON section for ``route``, or why the native core cannot serve it."""
    return Unsupported("auth: not native yet")
