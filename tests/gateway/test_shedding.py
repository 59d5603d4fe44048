"""Load shedding in front of a deliberately slow upstream (real TCP, the real proxy).

The upstream answers after ``20 ms x requests in flight``: the more it is sent at once,
the slower every answer. Without shedding all 60 simultaneous requests reach it; with the
AIMD limiter the excess is shed with 503 ``overloaded`` before reaching it, and the
upstream's concurrency stays at the limiter's ceiling. Latencies are printed, not asserted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bastion import _native
from bastion.gateway import Gateway
from bastion.http.middleware.errors import ErrorMiddleware
from bastion.ratelimit.adaptive import LoadShedder
from gateway.gateway_support import call, route


@dataclass
class SlowUpstream:
    url: str
    server: asyncio.Server
    inflight: int = 0
    max_inflight: int = 0
    served: int = 0


@pytest.fixture
async def slow() -> AsyncIterator[SlowUpstream]:
    state = SlowUpstream("", None)  # type: ignore[arg-type]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                state.inflight += 1
                state.max_inflight = max(state.max_inflight, state.inflight)
                await asyncio.sleep(0.02 * state.inflight)  # overload makes everyone slower
                state.inflight -= 1
                state.served += 1
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url, state.server = f"http://127.0.0.1:{port}", server
    try:
        yield state
    finally:
        server.close()


async def wave(app: object, n: int) -> tuple[dict[int, int], list[float]]:
    async def one() -> tuple[int, float]:
        started = time.monotonic()
        result = await call(app, "GET", "/slow", client=("203.0.113.7", 4000))
        return result.status, time.monotonic() - started

    outcomes = await asyncio.gather(*(one() for _ in range(n)))
    counts: dict[int, int] = {}
    for status, _ in outcomes:
        counts[status] = counts.get(status, 0) + 1
    return counts, sorted(latency for status, latency in outcomes if status == 200)


async def test_shedding_bounds_upstream_concurrency(slow: SlowUpstream) -> None:
    plain = Gateway([route("slow", "/slow", slow.url)])
    counts, latencies = await wave(ErrorMiddleware(plain), 60)
    print(f"\nno shedding: {counts}, admitted latency max {latencies[-1] * 1000:.0f} ms")
    assert counts == {200: 60}
    # All 60 at once on a quiet machine; on a busy one some finish before the last start.
    assert slow.max_inflight > 10  # more than the shedder's ceiling below
    await plain.shutdown()

    slow.max_inflight = 0
    shedded = Gateway([route("slow", "/slow", slow.url)])
    shedded.shedder = LoadShedder(initial=8, minimum=2, maximum=10, target_latency=0.1, backoff=0.5)
    app = ErrorMiddleware(shedded)
    totals: dict[int, int] = {}
    worst = 0.0
    for _ in range(5):
        counts, latencies = await wave(app, 60)
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
        worst = max(worst, latencies[-1] if latencies else 0.0)
    limiter = shedded.shedder.for_route("slow")
    print(
        f"shedding: {totals}, upstream max in flight {slow.max_inflight}, "
        f"limit now {limiter.limit:.1f}, admitted latency max {worst * 1000:.0f} ms"
    )
    assert set(totals) == {200, 503}
    assert totals[503] == limiter.shed > 0
    assert slow.max_inflight <= 10  # never more than the ceiling reached the upstream
    assert limiter.inflight == 0
    await shedded.shutdown()


async def test_shed_request_is_problem_json_with_retry_after(slow: SlowUpstream) -> None:
    gateway = Gateway([route("slow", "/slow", slow.url)])
    gateway.shedder = LoadShedder(initial=1, minimum=1, maximum=1)
    app = ErrorMiddleware(gateway)
    first = asyncio.create_task(call(app, "GET", "/slow"))
    await asyncio.sleep(0.005)
    second = await call(app, "GET", "/slow")
    assert second.status == 503
    assert second.header("Retry-After") == "1"
    assert second.json()["reason"] == "overloaded"
    assert (await first).status == 200
    await gateway.shutdown()


async def test_serve_native_shares_the_native_limiter(slow: SlowUpstream) -> None:
    """With ``serve_native`` the route's limiter is the native plane's (one limit for both)."""
    name, cut = f"shared-{uuid.uuid4().hex}", f"cut-{uuid.uuid4().hex}"  # the registry is global
    gateway = Gateway([route(name, "/slow", slow.url)])
    settings = {"initial": 1, "minimum": 1, "maximum": 1, "target_latency": 10.0, "backoff": 0.5}
    gateway.shedder = LoadShedder(serve_native=True, **settings)
    app = ErrorMiddleware(gateway)
    first = asyncio.create_task(call(app, "GET", "/slow"))
    await asyncio.sleep(0.005)
    assert _native.shed_state(name) == (1.0, 1, 1, 0)
    second = await call(app, "GET", "/slow")
    assert (second.status, second.json()["reason"]) == (503, "overloaded")
    assert second.header("Retry-After") == "1"
    assert (await first).status == 200
    assert _native.shed_state(name) == (1.0, 0, 1, 1)
    assert gateway.shedder.routes == {}  # no Python-side limiter
    # A failure inside the slot counts as one (the limit is cut, here to its floor of 1).
    slot = _native.shed_acquire(cut, 4, 1, 4, 10.0, 0.5)
    assert slot is not None
    slot.finish(True)
    slot.finish(True)  # once only
    assert _native.shed_state(cut) == (2.0, 0, 1, 0)
    await gateway.shutdown()
