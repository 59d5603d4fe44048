"""Per-request cost of the gateway metrics, side by side with prometheus_client's own children.

Prints nanoseconds per request for:

1. ``Metrics.gateway_request`` (allowed, and a denial) — what the gateway calls;
2. the same counter + histogram done with ``prometheus_client``'s pre-bound
   ``labels()`` children (the obvious implementation bastion does not use).

(The gateway's own per-request counting is the native core's atomics now: the
Python pipeline this once timed end to end is gone.)

Run: ``.venv/bin/python bench/metrics/run.py`` (``--quick`` for fewer rounds).
Ratios matter more than absolute numbers on a shared 2-core machine.
"""

from __future__ import annotations

import sys
import timeit
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from bastion.gateway.errors import UnauthenticatedError
from bastion.observability.metrics import GATEWAY_BUCKETS, Metrics

QUICK = "--quick" in sys.argv
N = 50_000 if QUICK else 500_000
REPEAT = 3 if QUICK else 5


def best(stmt: Any, number: int = N) -> float:
    """Best-of-REPEAT nanoseconds per call of ``stmt``."""
    return min(timeit.repeat(stmt, number=number, repeat=REPEAT)) / number * 1e9


def micro() -> dict[str, float]:
    metrics = Metrics(process=False)
    denial = UnauthenticatedError()
    registry = CollectorRegistry()
    counter = Counter("r_total", "r", ["route", "outcome"], registry=registry)
    histogram = Histogram("d_seconds", "d", ["route"], registry=registry, buckets=GATEWAY_BUCKETS)
    child_c = counter.labels("orders", "allowed")
    child_h = histogram.labels("orders")

    def library() -> None:
        child_c.inc()
        child_h.observe(0.003)

    return {
        "empty call (baseline)": best(lambda: None),
        "Metrics.gateway_request, allowed": best(
            lambda: metrics.gateway_request("orders", None, 0.003)
        ),
        "Metrics.gateway_request, denied": best(
            lambda: metrics.gateway_request("orders", denial, 0.0004)
        ),
        "prometheus_client children (inc + observe)": best(library),
    }


def main() -> None:
    for name, ns in micro().items():
        print(f"{name:48s} {ns:8.0f} ns/request")


if __name__ == "__main__":
    main()
