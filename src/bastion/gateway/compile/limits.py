"""The ``limits`` section of a native route: its rate limits, as the native limit step reads them.

The rules are those of the Python limit step that was (same bucket prefixes, same
parsed limits), written with the integers the
native GCRA must agree on: ``{"rules": [{"per", "prefix", "rate", "period",
"burst", "interval_us", "tolerance_us", "fail"}], "store": "memory" | "redis"}``.
In memory, the native store is the one Python's limiter uses too (token
exchanges draw from it); on Redis, the native limiter runs
Python's script on the same keys (``bastion._native.redis_limiter_configure``,
set up by the runtime), and on a Redis failure applies each limit's ``fail`` itself
(``native/src/limit/outage.rs``). The settings refuse a Redis URL with options the
native connection does not apply (``shared.url``:
:func:`~bastion.storage.shared.resp.native_refusal`), so every route's limits are native.

``shedding`` is ``None`` or ``ratelimit.shedding`` as the native AIMD limiter
(``native/src/limit/shedding.rs``) reads it: ``{"initial", "minimum", "maximum",
"target_latency", "backoff"}``.
"""

from __future__ import annotations

from typing import Any

from bastion.settings import RouteSettings, Settings
from bastion.settings.rates import Limit
from bastion.storage.shared.resp import native_config

__all__ = ["section"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def section(route: RouteSettings, settings: Settings) -> dict[str, Any] | list[Any]:
    """The JSON section for ``route``.

    Raises ValueError naming the entry when a limit is invalid, or ``shared.url``
    when it has options the native limiter does not apply (the settings
    validation catches both first).
    """
    store = "memory"
    if settings.shared.url.startswith(_REDIS_SCHEMES):
        config = native_config(
            settings.shared.url,
            key_prefix=settings.shared.key_prefix,
            connect_timeout=1.0,
            timeout=1.0,
        )
        if config is None:  # the settings refuse such a URL (SharedSettings)
            raise ValueError("shared.url has options the native limiter does not apply")
        store = "redis"
    rules: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(route.limits):
        try:
            limit = Limit.parse(entry.rate, burst=entry.burst)
        except ValueError as exc:
            raise ValueError(f"routes[{route.name}].limits[{index}]: {exc}") from None
        # Two limits on the same value (10/second and 1000/hour per key) need two buckets.
        count = seen.get(entry.per, 0)
        seen[entry.per] = count + 1
        tag = entry.per if count == 0 else f"{entry.per}#{count}"
        rules.append(
            {
                "per": entry.per,
                "prefix": f"{route.name}:{tag}:",
                "rate": limit.rate,
                "period": float(limit.period),
                "burst": limit.capacity,
                "interval_us": limit.interval_us,
                "tolerance_us": limit.tolerance_us,
                "fail": entry.fail,
            }
        )
    shedding = settings.ratelimit.shedding
    return {
        "rules": rules,
        "store": store,
        "key_limits_fail": settings.ratelimit.key_limits_fail,
        "shedding": {
            "initial": int(shedding.initial_limit),
            "minimum": int(shedding.min_limit),
            "maximum": int(shedding.max_limit),
            "target_latency": float(shedding.target_latency),
            "backoff": float(shedding.backoff),
        }
        if shedding.enabled
        else None,
    }
