"""Load shedding in front of a deliberately slow upstream (real TCP, a real ``bastion serve``).

The upstream answers after ``20 ms x requests in flight``: the more it is sent at once,
the slower every answer. Without shedding all 60 simultaneous requests reach it; with
``ratelimit.shedding`` (the AIMD limiter) the excess is shed with 503 ``overloaded`` before
reaching it, and the upstream's concurrency stays at the limiter's ceiling. Latencies are
printed, not asserted. The native limiter's own entry points (``_native.shed_acquire`` /
``shed_state``) keep a unit test, and the AIMD arithmetic of ``gateway/shedding.py`` is
tested on a fake clock.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from _support.gateway_edge import problem, serve_edge
from _support.gateway_server import GatewayServer
from bastion import _native
from bastion.gateway.shedding import AdaptiveConcurrency, LoadShedder, OverloadedError


@dataclass
class SlowUpstream:
    """A threaded HTTP/1.1 upstream, slower the more requests it holds at once."""

    sock: socket.socket
    inflight: int = 0
    max_inflight: int = 0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                buf = buf.split(b"\r\n\r\n", 1)[1]
                with self.lock:
                    self.inflight += 1
                    self.max_inflight = max(self.max_inflight, self.inflight)
                    delay = 0.02 * self.inflight  # overload makes everyone slower
                time.sleep(delay)
                with self.lock:
                    self.inflight -= 1
                    self.served += 1
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                except OSError:
                    return


@pytest.fixture(scope="module")
def slow() -> Iterator[SlowUpstream]:
    state = SlowUpstream(socket.create_server(("127.0.0.1", 0), backlog=256))
    threading.Thread(target=state.serve, daemon=True).start()
    try:
        yield state
    finally:
        state.sock.close()


def _route(upstream: str) -> str:
    return (
        f"  - name: slow\n    match: {{path: /slow}}\n    upstream: {upstream}\n    public: true\n"
    )


def _shedding(initial: int, minimum: int, maximum: int, target: str, backoff: float) -> str:
    return (
        f"ratelimit:\n  shedding: {{enabled: true, initial_limit: {initial}, "
        f"min_limit: {minimum}, max_limit: {maximum}, target_latency: {target}, "
        f"backoff: {backoff}}}\n"
    )


def wave(server: GatewayServer, n: int) -> tuple[dict[int, int], list[float]]:
    def one(_: int) -> tuple[int, float]:
        started = time.monotonic()
        with server.client(timeout=30) as client:
            status = client.get("/slow").status_code
        return status, time.monotonic() - started

    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(one, range(n)))
    counts: dict[int, int] = {}
    for status, _ in outcomes:
        counts[status] = counts.get(status, 0) + 1
    return counts, sorted(latency for status, latency in outcomes if status == 200)


@pytest.mark.timeout(180)
def test_shedding_bounds_upstream_concurrency(tmp_path: Path, slow: SlowUpstream) -> None:
    (tmp_path / "plain").mkdir()
    with serve_edge(tmp_path / "plain", _route(slow.url)) as plain:
        counts, latencies = wave(plain, 60)
    print(f"\nno shedding: {counts}, admitted latency max {latencies[-1] * 1000:.0f} ms")
    assert counts == {200: 60}
    # All 60 at once on a quiet machine; on a busy one some finish before the last start.
    assert slow.max_inflight > 10  # more than the shedder's ceiling below

    slow.max_inflight = 0
    (tmp_path / "shed").mkdir()
    settings = _shedding(8, 2, 10, "100ms", 0.5)
    with serve_edge(tmp_path / "shed", _route(slow.url), settings) as shedded:
        totals: dict[int, int] = {}
        worst = 0.0
        for _ in range(5):
            counts, latencies = wave(shedded, 60)
            for status, count in counts.items():
                totals[status] = totals.get(status, 0) + count
            worst = max(worst, latencies[-1] if latencies else 0.0)
        shed = shedded.counts().get(("slow", "overloaded"), 0)
    print(
        f"shedding: {totals}, upstream max in flight {slow.max_inflight}, "
        f"admitted latency max {worst * 1000:.0f} ms"
    )
    assert set(totals) == {200, 503}
    assert totals[503] == shed > 0
    assert slow.max_inflight <= 10  # never more than the ceiling reached the upstream
    assert slow.inflight == 0


@pytest.fixture(scope="module")
def one_slot(
    tmp_path_factory: pytest.TempPathFactory, slow: SlowUpstream
) -> Iterator[GatewayServer]:
    """A route whose limit is one request at a time (and stays so: latency never counts)."""
    settings = _shedding(1, 1, 1, "10s", 0.5)
    with serve_edge(tmp_path_factory.mktemp("one-slot"), _route(slow.url), settings) as server:
        yield server


def _while_one_in_flight(
    server: GatewayServer, slow: SlowUpstream, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """(the second request's answer, the first's) while the first holds the one slot."""
    first: list[httpx.Response] = []
    served = slow.served

    def hold() -> None:
        with server.client(timeout=30) as client:
            first.append(client.get("/slow"))

    thread = threading.Thread(target=hold)
    thread.start()
    deadline = time.monotonic() + 10
    while slow.inflight == 0 and slow.served == served:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    with server.client() as client:
        second = client.get("/slow", headers=headers)
    thread.join(30)
    return second, first[0]


def test_shed_request_is_problem_json_with_retry_after(
    one_slot: GatewayServer, slow: SlowUpstream
) -> None:
    second, first = _while_one_in_flight(one_slot, slow, {})
    assert problem(second)[:2] == (503, "overloaded")
    assert second.headers["retry-after"] == "1"
    assert first.status_code == 200
    (row,) = one_slot.denied([second.headers["x-request-id"]]).values()
    assert (row.reason, row.route) == ("overloaded", "slow")


def test_serve_native_shares_the_native_limiter() -> None:
    """The route's one limiter (the native plane's), through its entry points."""
    # A failure inside the slot counts as one (the limit is cut, here
    # to its floor of 1); the registry is global, hence the unique names.
    name, cut = f"shared-{uuid.uuid4().hex}", f"cut-{uuid.uuid4().hex}"
    held = _native.shed_acquire(name, 1, 1, 1, 10.0, 0.5)
    assert held is not None
    assert _native.shed_state(name) == (1.0, 1, 1, 0)
    assert _native.shed_acquire(name, 1, 1, 1, 10.0, 0.5) is None
    held.finish(False)
    assert _native.shed_state(name) == (1.0, 0, 1, 1)
    slot = _native.shed_acquire(cut, 4, 1, 4, 10.0, 0.5)
    assert slot is not None
    slot.finish(True)
    slot.finish(True)  # once only
    assert _native.shed_state(cut) == (2.0, 0, 1, 0)


# -- the AIMD arithmetic of gateway/shedding.py, on a fake clock ------------------------


def test_sheds_beyond_the_limit() -> None:
    limiter = AdaptiveConcurrency(initial=3, maximum=10)
    assert [limiter.try_acquire() for _ in range(5)] == [True, True, True, False, False]
    assert (limiter.inflight, limiter.shed, limiter.max_inflight) == (3, 2, 3)


def test_slow_responses_cut_multiplicatively_once_per_target() -> None:
    clock = SimpleNamespace(now=100.0)
    limiter = AdaptiveConcurrency(
        initial=20, minimum=2, target_latency=0.1, backoff=0.5, clock=lambda: clock.now
    )
    for _ in range(10):
        limiter.try_acquire()
    for _ in range(10):  # one slow wave: a single cut
        limiter.release(0.5)
    assert limiter.limit == 10
    clock.now += 0.2
    limiter.try_acquire()
    limiter.release(0.0, failed=True)  # a failure counts as slow
    assert limiter.limit == 5
    for _ in range(5):
        clock.now += 1
        limiter.try_acquire()
        limiter.release(1.0)
    assert limiter.limit == 2  # the floor


def test_fast_responses_grow_additively_only_when_used() -> None:
    limiter = AdaptiveConcurrency(initial=4, maximum=6, target_latency=0.1)
    limiter.try_acquire()
    limiter.release(0.01)  # 1 of 4 in use: an idle upstream says nothing
    assert limiter.limit == 4
    for _ in range(40):  # fully used and fast: about +1 per limit's worth of responses
        for _ in range(4):
            limiter.try_acquire()
        for _ in range(4):
            limiter.release(0.01)
    assert limiter.limit == 6  # the ceiling


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="need 1 <= minimum <= initial <= maximum, not 5/2/10"):
        AdaptiveConcurrency(initial=2, minimum=5, maximum=10)
    with pytest.raises(ValueError, match="backoff must be between 0 and 1, not 1"):
        AdaptiveConcurrency(backoff=1)


async def test_shedder_admits_then_refuses_with_503() -> None:
    shedder = LoadShedder(initial=1, minimum=1, maximum=1)
    async with shedder.admit("orders"):
        with pytest.raises(OverloadedError) as info:
            async with shedder.admit("orders"):
                pass
        assert (info.value.status, info.value.code, info.value.retry_after) == (
            503,
            "overloaded",
            1,
        )
        async with shedder.admit("billing"):  # per route
            pass
    assert shedder.for_route("orders").inflight == 0
