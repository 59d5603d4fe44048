"""AlertManager: deduplication per (type, key), the alert.raised record, the log line, delivery."""

from __future__ import annotations

import logging

import pytest

from bastion.audit.alerts import Alert, AlertManager
from bastion.audit.detectors import BruteForceDetector
from bastion.audit.events import Auditor, Event, EventTypes


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def alert(key: str = "account:a", type: str = "brute_force") -> Alert:
    return Alert(
        type=type,
        severity="high",
        summary="s",
        dedup_key=key,
        first_seen=1.0,
        last_seen=2.0,
        count=3,
        client_id="a",
        ip="192.0.2.1",
    )


def test_alerts_are_recorded_logged_and_delivered_once_per_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    auditor, clock = Auditor(), Clock()
    delivered: list[Alert] = []
    manager = AlertManager(auditor, [], dedup_window=600, deliver=delivered.append, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bastion.alerts"):
        first = manager.raise_alert(alert())
        clock.now += 599
        assert manager.raise_alert(alert()) is None
        assert manager.raise_alert(alert(key="account:b")) is not None
        assert manager.raise_alert(alert(type="ip_failures")) is not None
        clock.now += 1
        again = manager.raise_alert(alert())
    assert first is not None and again is not None
    assert [a.id for a in delivered] == [first.id, delivered[1].id, delivered[2].id, again.id]
    assert first.count == 6  # the folded one added its count
    assert (manager.raised, manager.suppressed) == (4, 1)
    records = [e for e in auditor.queue if e.type == EventTypes.ALERT]
    assert len(records) == 4
    assert records[0].reason == "brute_force"
    assert records[0].outcome == "info"
    assert records[0].data["id"] == first.id
    assert records[0].client_id == "a" and records[0].ip == "192.0.2.1"
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "alert brute_force (high): s"
    assert len(lines) == 4


def test_the_manager_runs_detectors_on_auditor_events_and_ignores_its_own_records() -> None:
    auditor, clock = Auditor(), Clock()
    delivered: list[Alert] = []
    manager = AlertManager(
        auditor,
        [BruteForceDetector(failures=3, window=60, clock=clock)],
        deliver=delivered.append,
        clock=clock,
    )
    manager.attach()
    manager.attach()  # idempotent: one subscription
    for _ in range(9):
        auditor.record(EventTypes.CLIENT_AUTH, "failure", client_id="victim", ip="192.0.2.9")
    assert [a.type for a in delivered] == ["brute_force"]
    assert delivered[0].count == 9  # three raises folded into one
    assert sum(1 for e in auditor.queue if e.type == EventTypes.ALERT) == 1
    manager.detach()
    for _ in range(9):
        auditor.record(EventTypes.CLIENT_AUTH, "failure", client_id="other")
    assert len(delivered) == 1


def test_a_failing_detector_or_deliverer_does_not_break_recording(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        name = "broken"

        def observe(self, event: Event) -> Alert | None:
            raise RuntimeError("boom")

    def deliver(_: Alert) -> None:
        raise RuntimeError("queue gone")

    auditor, clock = Auditor(), Clock()
    manager = AlertManager(
        auditor,
        [Broken(), BruteForceDetector(failures=1, window=60, clock=clock)],
        deliver=deliver,
        clock=clock,
    )
    manager.attach()
    auditor.record(EventTypes.LOGIN, "failure", subject="alice")
    assert manager.raised == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "detector broken failed" in messages
    assert "alert delivery failed to enqueue" in messages


def test_dedup_memory_is_bounded() -> None:
    manager = AlertManager(Auditor(), [], max_keys=5, clock=Clock())
    for i in range(50):
        manager.raise_alert(alert(key=f"account:{i}"))
    assert len(manager._open) == 5


def test_alert_json_is_plain_and_timestamps_are_rfc3339() -> None:
    document = alert().to_json()
    assert document["first_seen"] == "1970-01-01T00:00:01Z"
    assert document["last_seen"] == "1970-01-01T00:00:02Z"
    assert set(document) == {
        "id",
        "type",
        "severity",
        "summary",
        "dedup_key",
        "subject",
        "client_id",
        "ip",
        "route",
        "key_id",
        "first_seen",
        "last_seen",
        "count",
        "data",
    }
