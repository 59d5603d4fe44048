"""audit/native_drain.py: native decisions become Python's audit rows and per-minute counts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bastion import _native
from bastion.audit.aggregates import MinuteCount
from bastion.audit.alerts import AlertManager
from bastion.audit.events import Auditor, Event, EventTypes
from bastion.audit.native_drain import DROP_ALERT, NativeAuditDrain

T = 1_700_000_000.0  # a Unix time at a minute boundary + 20 s
MINUTE = int(T // 60)


@pytest.fixture(autouse=True)
def _empty_queue() -> None:
    # The native queue is process-wide: start every test from an empty one.
    _native.audit_set_capacity(65_536)
    while _native.audit_pending():
        _native.audit_drain(100_000)


def _allow(route: str, **identity: str) -> None:
    _native.audit_record(True, 200, route, "GET", "/api/x", timestamp=T, **identity)  # type: ignore[arg-type]


def test_denials_become_gateway_denied_events_like_pythons() -> None:
    auditor = Auditor()
    drain = NativeAuditDrain(auditor)
    _native.audit_record(
        False,
        429,
        "orders",
        "POST",
        "/api/orders/" + "x" * 300,
        reason="rate_limited",
        step="limit",
        subject="user-1",
        key_id="k1",
        ip="192.0.2.9",
        user_agent="curl/8",
        request_id="req-1",
        latency_us=120,
        timestamp=T,
    )
    _native.audit_record(
        False,
        504,
        "orders",
        "GET",
        "/api/orders",
        reason="upstream_timeout",
        step="proxy",
        door="websocket",
        request_id="req-2",
        timestamp=T,
    )
    assert drain.drain_once() == 2
    first, second = auditor.take(10)
    assert first == Event(
        type=EventTypes.GATEWAY_DENIED,
        outcome="denied",
        reason="rate_limited",
        request_id="req-1",
        ip="192.0.2.9",
        user_agent="curl/8",
        subject="user-1",
        client_id=None,
        key_id="k1",
        route="orders",
        data={"status": 429, "step": "limit", "method": "POST", "path": "/api/orders/" + "x" * 244},
        occurred_at=datetime.fromtimestamp(T, UTC),
    )
    assert (second.outcome, second.reason, second.data) == (
        "failure",
        "upstream_timeout",
        {
            "status": 504,
            "step": "proxy",
            "method": "GET",
            "path": "/api/orders",
            "door": "websocket",
        },
    )


def test_allows_are_counted_per_minute_and_principal() -> None:
    auditor = Auditor()
    auditor.traffic._clock = lambda: T + 120  # the drain runs two minutes later
    drain = NativeAuditDrain(auditor)
    for _ in range(3):
        _allow("orders", subject="u", key_id="k1")
    _allow("orders")
    _allow("orders", subject="u", client_id="svc")
    _allow("orders", subject="u")
    assert drain.drain_once() == 6
    start = datetime.fromtimestamp(MINUTE * 60, UTC)
    assert auditor.traffic.take_closed() == [
        MinuteCount(start, "orders", "anonymous", None, 1),
        MinuteCount(start, "orders", "client", "svc", 1),
        MinuteCount(start, "orders", "key", "k1", 3),
        MinuteCount(start, "orders", "subject", "u", 1),
    ]
    assert auditor.queue == type(auditor.queue)()  # allows are never rows


def test_a_full_queue_keeps_denials_counts_drops_and_alerts() -> None:
    auditor = Auditor()
    alerts = AlertManager(auditor, [])
    drain = NativeAuditDrain(auditor, alerts=alerts, capacity=2)
    before = _native.audit_dropped()
    _allow("orders")
    _allow("orders")  # the same per-minute count: needs no room
    _native.audit_record(False, 429, "orders", "GET", "/", reason="rate_limited", timestamp=T)
    _allow("orders", subject="u", key_id="k2")  # a new count, queue full: dropped
    # A denial when full evicts the allow count (2 allows lost), never another denial.
    _native.audit_record(False, 429, "orders", "GET", "/", reason="rate_limited", timestamp=T)
    _native.audit_record(False, 429, "orders", "GET", "/", reason="rate_limited", timestamp=T)
    assert _native.audit_dropped() == (before[0] + 3, before[1] + 1)
    drain.drain_once()
    events = auditor.take(10)
    types = [e.type for e in events]
    assert types.count(EventTypes.GATEWAY_DENIED) == 2
    dropped = next(e for e in events if e.type == EventTypes.DROPPED)
    assert dropped.reason == "native_queue_full" and dropped.data["count"] == 4
    assert [a.type for a in alerts.recent] == [DROP_ALERT]
    drain.drain_once()  # reported once
    assert [e.type for e in auditor.take(10)] == []


async def test_run_drains_until_stopped_then_empties_the_queue() -> None:
    auditor = Auditor()
    drain = NativeAuditDrain(auditor, interval=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(drain.run(stop))
    _native.audit_record(False, 502, "r", "GET", "/", reason="upstream_unavailable", timestamp=T)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if auditor.queue:
            break
    assert len(auditor.queue) == 1
    stop.set()
    _native.audit_record(False, 502, "r", "GET", "/", reason="upstream_unavailable", timestamp=T)
    await task
    assert len(auditor.queue) == 2 and _native.audit_pending() == 0
