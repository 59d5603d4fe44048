"""Risk-based tightening: keys and addresses flagged by a detector get tighter limits for a while.

On an attack alert a detector raised (:mod:`bastion.audit.detectors`),
:func:`~bastion.ratelimit.risk_alerts.tighten_on_alerts` calls
``registry.flag("ip", "203.0.113.9", factor=4, until=time.time() + 900)``;
until then every rate limit applying to that requester is divided by 4 (rate
and burst, see :meth:`~bastion.ratelimit.Limit.divided`). Every flag is mirrored
into the native data plane (``bastion._native``), whose limit step divides a
flagged requester's limits (``native/src/risk.rs``); :meth:`RiskRegistry.factor`
is the same answer on the Python side. Addresses are flagged and looked up by
their bucket (:func:`~bastion.ratelimit.addresses.ip_bucket`: an IPv6 client by
its /64). Flags are per process (each node's detectors see the traffic of that
node); expired flags are dropped when read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Literal

from bastion import _native
from bastion.ratelimit.addresses import ip_bucket

__all__ = ["RiskKind", "RiskRegistry"]

RiskKind = Literal["key", "ip", "subject", "client"]

_MAX_FLAGS: Final = 100_000


class RiskRegistry:
    """Flagged keys / addresses / subjects / clients and how much to tighten their limits."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._flags: dict[tuple[str, str], tuple[int, float]] = {}
        self._clock = clock

    def __bool__(self) -> bool:
        return bool(self._flags)

    def flag(self, kind: RiskKind, value: str, factor: int, until: float) -> None:
        """Divide the limits of requests with this ``kind``/``value`` by ``factor`` until ``until``.

        A stronger or longer flag on the same value replaces a weaker one. Raises
        ValueError for a factor below 2 or a time in the past.
        """
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
            raise ValueError(f"factor must be a whole number >= 2, not {factor!r}")
        now = self._clock()
        if until <= now:
            raise ValueError("until must be in the future")
        value = _canonical(kind, value)
        old = self._flags.get((kind, value))
        if old is not None and old[1] <= now:
            old = None  # expired (not yet read): replaced, not merged, as natively
        if old is not None:
            factor, until = max(factor, old[0]), max(until, old[1])
        elif len(self._flags) >= _MAX_FLAGS:
            self._sweep()
            if len(self._flags) >= _MAX_FLAGS:
                return  # bounded memory; the strongest defence is still the limits themselves
        self._flags[(kind, value)] = (factor, until)
        _native.risk_flag(kind, value, until, factor, now)

    def clear(self, kind: RiskKind, value: str) -> None:
        """Lift a flag early."""
        value = _canonical(kind, value)
        self._flags.pop((kind, value), None)
        _native.risk_clear(kind, value)

    def factor(self, kind: RiskKind, value: str | None) -> int:
        """The divisor for ``value``'s limits now (1 when not flagged or expired)."""
        if value is None:
            return 1
        value = _canonical(kind, value)
        found = self._flags.get((kind, value))
        if found is None:
            return 1
        if found[1] <= self._clock():
            del self._flags[(kind, value)]
            return 1
        return found[0]

    def _sweep(self) -> None:
        now = self._clock()
        for item in [k for k, (_, until) in self._flags.items() if until <= now]:
            del self._flags[item]


def _canonical(kind: RiskKind, value: str) -> str:
    return ip_bucket(value) if kind == "ip" else value
