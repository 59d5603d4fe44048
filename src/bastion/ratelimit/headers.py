"""``RateLimit-Policy``, ``RateLimit`` and ``Retry-After`` header values for a limiter result.

Follows draft-ietf-httpapi-ratelimit-headers (-08 onwards, structured fields,
https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/): each
field is an RFC 9651 List whose items are Strings naming a policy, e.g.::

    RateLimit-Policy: "100/minute";q=100;w=60
    RateLimit: "100/minute";r=57;t=25

GCRA has no fixed window, so a policy is described as its bucket: ``q`` is the
burst (how many requests may be made at once) and ``w`` the seconds the bucket
takes to refill completely (``burst * period / rate``; with the default burst
this is exactly "rate per period"). ``r`` is what remains now and ``t`` the
seconds until the bucket is full again. Seconds are rounded up, as a client
waiting for them must never be early. ``Retry-After`` (RFC 9110 §10.2.3) is an
integer number of seconds, at least 1.
"""

from __future__ import annotations

import math

from bastion.ratelimit.backends import LimitState, Result
from bastion.ratelimit.gcra import MICROSECONDS, Limit


def _sf_string(value: str) -> str:
    # RFC 9651 §4.1.6: printable ASCII only, with \ and " escaped.
    if any(not 0x20 <= ord(char) <= 0x7E for char in value):
        raise ValueError(f"policy name {value!r} must be printable ASCII")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ceil_seconds(seconds: float) -> int:
    # Guard against 2.0000000001 from dividing integers of microseconds.
    return max(0, math.ceil(round(seconds, 6)))


def _window(limit: Limit) -> int:
    return max(1, math.ceil(limit.tolerance_us / MICROSECONDS))


def _items(limit: Limit) -> tuple[str, str]:
    """``limit``'s quoted label and its ``RateLimit-Policy`` item.

    Both depend on the limit only and every admitted request renders them, so they
    are built once and kept on the limit itself (hot path: no hashing, no lookup).
    """
    found = limit.header_items
    if found is None:
        quoted = _sf_string(limit.label)
        found = (quoted, f"{quoted};q={limit.capacity};w={_window(limit)}")
        object.__setattr__(limit, "header_items", found)
    return found


def ratelimit_policy(result: Result) -> str:
    """The ``RateLimit-Policy`` value: one item per limit of the result.

    Raises ValueError when a policy name is not printable ASCII.
    """
    states = result.states
    if len(states) == 1:
        return _items(states[0].limit)[1]
    return ", ".join([_items(s.limit)[1] for s in states])


def _state_item(state: LimitState) -> str:
    decision = state.decision
    return (
        f"{_items(state.limit)[0]};r={decision.remaining};t={_ceil_seconds(decision.reset_after)}"
    )


def ratelimit(result: Result) -> str:
    """The ``RateLimit`` value: remaining quota ``r`` and reset ``t`` of every limit.

    Raises ValueError when a policy name is not printable ASCII.
    """
    states = result.states
    if len(states) == 1:
        return _state_item(states[0])
    return ", ".join([_state_item(s) for s in states])


def rate_limit_fields(result: Result) -> list[tuple[bytes, bytes]]:
    """``RateLimit-Policy`` and ``RateLimit`` as raw (lower-case name, value) header pairs.

    The gateway's form of :func:`rate_limit_headers` for an admitted request (no
    ``Retry-After``), encoded once, here. Empty when the request had no limits;
    raises ValueError for a policy name that is not printable ASCII.
    """
    if not result.states:
        return []
    return [
        (b"ratelimit-policy", ratelimit_policy(result).encode("ascii")),
        (b"ratelimit", ratelimit(result).encode("ascii")),
    ]


def retry_after(result: Result) -> str:
    """The ``Retry-After`` value for a refused request: whole seconds, at least 1."""
    return str(max(1, _ceil_seconds(result.retry_after)))


def rate_limit_headers(result: Result) -> list[tuple[str, str]]:
    """All rate-limit headers for ``result``: policy and state, plus Retry-After if refused.

    Empty when the request had no limits. Raises ValueError for a policy name
    that is not printable ASCII.
    """
    if not result.states:
        return []
    headers = [("RateLimit-Policy", ratelimit_policy(result)), ("RateLimit", ratelimit(result))]
    if not result.allowed:
        headers.append(("Retry-After", retry_after(result)))
    return headers
