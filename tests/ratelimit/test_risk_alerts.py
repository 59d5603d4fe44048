"""Attack alerts flag what they name in the risk registry; other events and alerts do not."""

from __future__ import annotations

from bastion.audit.events import Auditor, EventTypes
from bastion.ratelimit.risk import RiskRegistry
from bastion.ratelimit.risk_alerts import tighten_on_alerts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attack_alerts_tighten_whom_they_name_for_the_duration() -> None:
    clock = Clock()
    auditor = Auditor()
    risk = RiskRegistry(clock=clock)
    unsubscribe = tighten_on_alerts(auditor, risk, factor=4, duration=900, clock=clock)
    auditor.record(
        EventTypes.ALERT, "info", reason="credential_stuffing", ip="203.0.113.9", data={}
    )
    auditor.record(EventTypes.ALERT, "info", reason="brute_force", client_id="svc", data={})
    auditor.record(EventTypes.ALERT, "info", reason="new_network", key_id="k1", data={})
    assert risk.factor("ip", "203.0.113.9") == 4
    assert risk.factor("client", "svc") == 4
    assert risk.factor("key", "k1") == 4
    assert risk.factor("ip", "198.51.100.1") == 1

    clock.now += 901  # the cool-down is over
    assert risk.factor("ip", "203.0.113.9") == 1
    assert risk.factor("key", "k1") == 1

    unsubscribe()
    auditor.record(EventTypes.ALERT, "info", reason="brute_force", ip="192.0.2.1", data={})
    assert risk.factor("ip", "192.0.2.1") == 1


def test_leaks_other_alerts_and_plain_events_flag_nothing() -> None:
    auditor = Auditor()
    risk = RiskRegistry()
    tighten_on_alerts(auditor, risk, factor=4, duration=900)
    auditor.record(EventTypes.ALERT, "info", reason="api_key_leaked", key_id="k1", data={})
    # a burst of 429s is the limiter working: tightening would make limits inexact
    auditor.record(EventTypes.ALERT, "info", reason="denial_spike", key_id="k2", data={})
    auditor.record(EventTypes.GATEWAY_DENIED, "denied", reason="unauthenticated", ip="192.0.2.7")
    assert not risk
