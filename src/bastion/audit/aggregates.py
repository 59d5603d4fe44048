"""Per-minute counts of allowed gateway requests (DESIGN: "Audit volume").

Allowed requests are not one audit row each: the gateway calls
:meth:`TrafficCounter.hit` (a clock read and a dict increment) and the writer
turns every closed minute into ``gateway.traffic`` events, one per route and
principal (the API key, else the OAuth client, else the subject).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = ["MinuteCount", "Principal", "TrafficCounter"]

Principal = Literal["key", "client", "subject", "anonymous"]
# (route, principal kind, principal id)
_Key = tuple[str, Principal, str | None]


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """How many requests one principal made on one route during one minute."""

    minute: datetime  # the start of the minute, UTC
    route: str
    principal: Principal
    principal_id: str | None
    count: int


class TrafficCounter:
    """Counts allowed requests per (route, principal) for the current minute."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minute = int(clock() // 60)
        self._counts: dict[_Key, int] = {}
        self._closed: list[MinuteCount] = []

    def hit(self, route: str, principal: Principal, principal_id: str | None) -> None:
        """Count one allowed request (O(1), no I/O)."""
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._close(minute)
        key = (route, principal, principal_id)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def add(
        self, minute: int, route: str, principal: Principal, principal_id: str | None, count: int
    ) -> None:
        """Count ``count`` allowed requests made during ``minute`` (minutes since the epoch).

        The native data plane's allows arrive this way, counted in batches
        (``audit/native_drain.py``); a past minute's count is closed at once.
        """
        current = int(self._clock() // 60)
        if current != self._minute:
            self._close(current)
        if minute >= self._minute:
            key = (route, principal, principal_id)
            self._counts[key] = self._counts.get(key, 0) + count
        else:
            start = datetime.fromtimestamp(minute * 60, UTC)
            self._closed.append(MinuteCount(start, route, principal, principal_id, count))

    def _close(self, minute: int) -> None:
        if self._counts:
            start = datetime.fromtimestamp(self._minute * 60, UTC)
            self._closed.extend(
                MinuteCount(start, route, kind, pid, n)
                for (route, kind, pid), n in self._counts.items()
            )
            self._counts = {}
        self._minute = minute

    def pending(self) -> bool:
        """Whether any count waits to be taken (this minute's or a closed minute's)."""
        return bool(self._counts or self._closed)

    def take_closed(self) -> list[MinuteCount]:
        """Remove and return the counts of every minute that has ended."""
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._close(minute)
        closed, self._closed = self._closed, []
        return closed

    def take_all(self) -> list[MinuteCount]:
        """Remove and return every count, the current (unfinished) minute's too (shutdown)."""
        self._close(int(self._clock() // 60))
        closed, self._closed = self._closed, []
        return closed
