"""What every section compiler shares."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Unsupported"]


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A route feature the native core does not serve yet; the route is deferred to Python."""

    reason: str
