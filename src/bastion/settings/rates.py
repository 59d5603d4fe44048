"""Rate limits as configured (``100/minute``, bucket ``burst``): the one home of rate parsing.

A :class:`Limit` is a value of the configuration (route ``limits``, per-key
limits, ``api_keys.exchange_rate``) and carries the integers GCRA needs
(:mod:`bastion.ratelimit.gcra`): the emission interval ``T = period / rate``
and the tolerance ``burst * T``, in whole microseconds, rounded once here so
that every backend (in-process, Redis's Lua, the native core) computes alike.
It lives with the settings, below ``ratelimit/``, so that settings validate
rates at load without importing the limiter.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final

MICROSECONDS: Final = 1_000_000

UNITS: Final[dict[str, int]] = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
"""The period units, in seconds (their full names label limits: ``100/minute``)."""

UNIT_NAMES: Final[dict[str, str]] = {
    "s": "second",
    "sec": "second",
    "second": "second",
    "m": "minute",
    "min": "minute",
    "minute": "minute",
    "h": "hour",
    "hour": "hour",
    "d": "day",
    "day": "day",
}
"""What :meth:`Limit.parse` accepts as a unit; every name of two letters or more may
also be plural (``secs``, ``mins``, ``hours``, ``days``; not ``ms``, which is not minutes)."""

# The largest tolerance kept exact by a double (Lua in Redis) with room for the
# TAT to be added to a current timestamp in microseconds.
_MAX_TOLERANCE_US: Final = 2**50

_LIMIT_TEXT = re.compile(r"\s*(\d+)\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per ``period`` seconds, with a bucket of ``burst`` (default ``rate``).

    ``name`` labels the limit in ``RateLimit`` headers (default: its text, e.g.
    ``100/minute``). Raises ValueError (naming the bad value) when rate or burst
    is not a positive integer, the period is not positive, or the interval
    between two requests would be below one microsecond.
    """

    rate: int
    period: float
    burst: int | None = None
    name: str = ""
    interval_us: int = field(init=False, repr=False, compare=False)
    tolerance_us: int = field(init=False, repr=False, compare=False)
    # (quoted label, RateLimit-Policy item), set by bastion.ratelimit.headers on first
    # use: a cache, not part of the limit's value.
    header_items: tuple[str, str] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, int) or self.rate < 1:
            raise ValueError(f"rate must be a positive integer, not {self.rate!r}")
        if not isinstance(self.period, int | float) or isinstance(self.period, bool):
            raise ValueError(f"period must be a number of seconds, not {self.period!r}")
        if not math.isfinite(self.period) or self.period <= 0:
            raise ValueError(f"period must be a positive number of seconds, not {self.period!r}")
        burst = self.rate if self.burst is None else self.burst
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be a positive integer, not {self.burst!r}")
        interval = round(self.period * MICROSECONDS / self.rate)
        if interval < 1:
            raise ValueError(
                f"{self.rate} per {self.period:g}s is too fast: "
                "at most one request per microsecond can be limited"
            )
        if burst * interval > _MAX_TOLERANCE_US:
            raise ValueError(f"burst {burst} over {self.period:g}s is too large")
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "tolerance_us", burst * interval)

    @classmethod
    def parse(cls, text: str, *, burst: int | None = None, name: str = "") -> Limit:
        """Parse ``"100/minute"``, ``"10/min"``, ``"5/s"``: a count, ``/`` and a unit of
        :data:`UNIT_NAMES` (the one home of rate parsing).

        Raises ValueError with a message quoting ``text`` and the expected form.
        """
        if not isinstance(text, str):
            raise ValueError(f"a rate limit must be a string like '100/minute', not {text!r}")
        match = _LIMIT_TEXT.fullmatch(text.lower())
        if match is None:
            raise ValueError(
                f"invalid rate limit {text!r}: expected '<count>/<unit>' "
                "such as '100/minute' (units: second, minute, hour, day)"
            )
        count, word = int(match.group(1)), match.group(2)
        unit = UNIT_NAMES.get(word)
        if unit is None and len(word) > 2 and word.endswith("s"):
            unit = UNIT_NAMES.get(word[:-1])
        if unit is None:
            # (Short forms s, sec, m, min, h, d work too: docs/rate-limits.md.)
            raise ValueError(
                f"invalid rate limit {text!r}: unknown unit {word!r} "
                "(use second, minute, hour or day)"
            )
        if count < 1:
            raise ValueError(f"invalid rate limit {text!r}: the count must be at least 1")
        return cls(count, float(UNITS[unit]), burst, name)

    @property
    def capacity(self) -> int:
        """The bucket size: how many requests may arrive at once (``burst``)."""
        return self.rate if self.burst is None else self.burst

    @property
    def label(self) -> str:
        """``name`` if set, else the limit as text: ``100/minute``, or ``7/90s``."""
        if self.name:
            return self.name
        for unit, seconds in UNITS.items():
            if self.period == seconds:
                return f"{self.rate}/{unit}"
        return f"{self.rate}/{self.period:g}s"

    def divided(self, parts: int) -> Limit:
        """This limit shared by ``parts`` nodes: rate and burst divided (burst at least 1).

        The rule the native limit step follows (``Limit::divided`` in
        ``native/src/limit/gcra.rs``) for a limit failing open, where each node limits on
        its own, and for risk tightening. Divided past the bound on a bucket, the furthest
        division within it.
        Raises ValueError when ``parts`` is not a positive integer.
        """
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"node count must be a positive integer, not {parts!r}")
        if parts == 1:
            return self

        def split(p: int) -> Limit:
            # rate/p per period == rate per p*period, without rounding the rate to 0.
            return Limit(
                self.rate, self.period * p, max(1, self.capacity // p), self.name or self.label
            )

        try:
            return split(parts)
        except ValueError:
            pass
        # Divided so far that one request would wait past the bound on a bucket (~35
        # years): the furthest division within it. Valid for p parts is valid for fewer,
        # so bisect (as the native core does, native/src/limit/gcra.rs).
        low, high = 1, parts
        while high - low > 1:
            mid = low + (high - low) // 2
            try:
                split(mid)
            except ValueError:
                high = mid
            else:
                low = mid
        return split(low)
