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

from dataclasses import dataclass

# The limit value lives with the settings (the one home of rate parsing); re-exported
# here, where the algorithm that reads its integers is.
from bastion.settings.rates import MICROSECONDS, UNIT_NAMES, UNITS, Limit

__all__ = ["MICROSECONDS", "UNITS", "UNIT_NAMES", "Decision", "Limit", "decide"]


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
