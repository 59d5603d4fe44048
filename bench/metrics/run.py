"""Per-request cost of the gateway metrics, side by side with prometheus_client's own children.

Prints nanoseconds per request for:

1. ``Metrics.gateway_request`` (allowed, and a denial) — what the gateway calls;
2. the same counter + histogram done with ``prometheus_client``'s pre-bound
   ``labels()`` children (the obvious implementation bastion does not use);
3. ``Gateway.__call__`` over a one-step table that answers at once, without
   and with metrics: the whole added cost in the gateway, timing included.

Run: ``.venv/bin/python bench/metrics/run.py`` (``--quick`` for fewer rounds).
Ratios matter more than absolute numbers on a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import sys
import timeit
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from bastion.audit.metrics import GATEWAY_BUCKETS, Metrics
from bastion.gateway.errors import UnauthenticatedError
from bastion.gateway.pipeline import Exchange, Gateway, Step, match

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


class _Route:
    def __init__(self) -> None:
        self.name = "orders"
        self.match = type("M", (), {"path": "/api", "host": None, "methods": None})()
        self.upstream = "http://127.0.0.1:9"
        self.public = True
        self.auth = ()
        self.strip_prefix = False
        self.timeout = 5.0


async def _answer(ex: Exchange) -> None:
    await ex.send({"type": "http.response.start", "status": 204, "headers": []})
    await ex.send({"type": "http.response.body", "body": b""})


async def gateway() -> tuple[float, float]:
    """Best ns/request of the gateway without and with metrics (runs interleaved)."""
    steps = (Step("match", match), Step("answer", _answer))
    plain = Gateway([_Route()], steps=steps)
    counted = Gateway([_Route()], steps=steps, metrics=Metrics(process=False))
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/x",
        "raw_path": b"/api/x",
        "headers": [(b"host", b"gw.test")],
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        return None

    rounds = N // 10
    loop = asyncio.get_running_loop()
    best: dict[bool, float] = {False: float("inf"), True: float("inf")}
    # Interleaved, many short runs, best of each: the machine is shared and noisy.
    for _ in range(REPEAT * 4):
        for with_metrics, gw in ((False, plain), (True, counted)):
            start = loop.time()
            for _ in range(rounds):
                await gw(scope, receive, send)
            best[with_metrics] = min(best[with_metrics], (loop.time() - start) / rounds * 1e9)
    return best[False], best[True]


def main() -> None:
    for name, ns in micro().items():
        print(f"{name:48s} {ns:8.0f} ns/request")
    without, with_ = asyncio.run(gateway())
    print(f"{'Gateway.__call__ (match + answer), no metrics':48s} {without:8.0f} ns/request")
    print(f"{'Gateway.__call__ (match + answer), metrics':48s} {with_:8.0f} ns/request")
    print(f"{'  added by metrics':48s} {with_ - without:8.0f} ns/request")


if __name__ == "__main__":
    main()
