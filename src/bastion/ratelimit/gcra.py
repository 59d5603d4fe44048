"""GCRA, the generic cell rate algorithm: a token bucket kept as one timestamp per key.

A limit of ``rate`` requests per ``period`` with a bucket of ``burst`` requests
has an *emission interval* ``T = period / rate`` and a *tolerance*
``tau = burst * T``. The whole state of a key is its *theoretical arrival time*
(TAT): the instant at which the bucket would be full again. A request costing
``c`` is admitted at ``now`` iff ``max(TAT, now) + c*T - tau <= now``, and then
moves the TAT to ``max(TAT, now) + c*T``. A key whose TAT is in the past is in
the same state as a key never seen, so it can be forgotten.

All times here are integers in **microseconds**, and the interval is rounded to
a whole microsecond once, when the limit is built. Integer arithmetic is what
makes the algorithm exact: with ``burst == rate``, ``N`` requests at the same
instant admit exactly ``N`` (float TATs summed step by step drift by an ulp and
would admit ``N - 1`` for some ``N``). The Redis backend runs the same integer
arithmetic in Lua, whose doubles are exact below 2**53 µs (285 years).
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


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one limit for one request.

    ``new_tat`` (µs) is the state to store (equal to the old TAT when refused);
    ``remaining`` is how many more cost-1 requests would be admitted right now;
    ``reset_after`` the seconds until the bucket is full again; ``retry_after``
    the seconds to wait before this request would be admitted (0 when admitted).
    """

    allowed: bool
    new_tat: int
    remaining: int
    reset_after: float
    retry_after: float


def decide(tat: int | None, now: int, limit: Limit, cost: int = 1) -> Decision:
    """Apply ``limit`` to a request costing ``cost`` at ``now`` (µs), given the key's ``tat``.

    ``tat`` is ``None`` for a key never seen (or forgotten). ``cost=0`` admits
    without consuming and reports the current state. Raises ValueError for a
    negative or non-integer cost.
    """
    # type() rather than isinstance: a bool is an int but not a cost (and it is faster).
    if type(cost) is not int or cost < 0:
        raise ValueError(f"cost must be a non-negative integer, not {cost!r}")
    base = now if tat is None or tat < now else tat
    interval, tolerance = limit.interval_us, limit.tolerance_us
    new_tat = base + cost * interval
    allow_at = new_tat - tolerance
    if allow_at > now:
        return Decision(
            allowed=False,
            new_tat=base,
            remaining=max(0, (now + tolerance - base) // interval),
            reset_after=(base - now) / MICROSECONDS,
            retry_after=(allow_at - now) / MICROSECONDS,
        )
    return Decision(
        allowed=True,
        new_tat=new_tat,
        remaining=(now + tolerance - new_tat) // interval,
        reset_after=(new_tat - now) / MICROSECONDS,
        retry_after=0.0,
    )
