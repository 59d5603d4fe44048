"""The detectors, one scripted attack each at fixed instants: one alert; normal traffic: none."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.audit.alerts import Alert, Detector
from bastion.audit.detectors import (
    BruteForceDetector,
    CredentialStuffingDetector,
    DenialSpikeDetector,
    IpFailuresDetector,
    KeyLeakDetector,
    NewNetworkDetector,
    TokenReuseDetector,
    build_detectors,
)
from bastion.audit.events import Event, EventTypes
from bastion.settings.alerts import DetectorSettings


class Clock:
    """A settable clock (seconds)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fail(account: str, ip: str = "203.0.113.9", type: str = EventTypes.CLIENT_AUTH) -> Event:
    return Event(type=type, outcome="failure", reason="bad_secret", client_id=account, ip=ip)


def denied(status: int = 401, route: str = "orders", key: str | None = None, **kw: Any) -> Event:
    return Event(
        type=EventTypes.GATEWAY_DENIED,
        outcome="denied",
        reason="invalid_token",
        route=route,
        key_id=key,
        ip=kw.pop("ip", "198.51.100.1"),
        data={"status": status},
        **kw,
    )


def run(detector: Detector, clock: Clock, events: list[tuple[float, Event]]) -> list[Alert]:
    alerts = []
    for at, event in events:
        clock.now = at
        alert = detector.observe(event)
        if alert is not None:
            alerts.append(alert)
    return alerts


# -- brute force -------------------------------------------------------------------------


def test_brute_force_on_one_account_raises_exactly_one_alert() -> None:
    clock = Clock()
    detector = BruteForceDetector(failures=5, window=60, clock=clock)
    attack = [(1000.0 + i, fail("victim", ip=f"203.0.113.{i}")) for i in range(9)]
    (alert,) = run(detector, clock, attack)
    assert alert.type == "brute_force"
    assert alert.severity == "high"
    assert alert.dedup_key == "account:victim"
    assert alert.client_id == "victim"
    assert (alert.first_seen, alert.last_seen, alert.count) == (1000.0, 1004.0, 5)
    assert alert.summary == "5 failed authentications of account 'victim' within 60s"


def test_brute_force_needs_the_failures_within_the_window() -> None:
    clock = Clock()
    detector = BruteForceDetector(failures=5, window=60, clock=clock)
    slow = [(1000.0 + 20 * i, fail("victim")) for i in range(20)]  # 3 per minute
    assert run(detector, clock, slow) == []


def test_brute_force_ignores_successes_and_other_types() -> None:
    clock = Clock()
    detector = BruteForceDetector(failures=3, window=60, clock=clock)
    ok = Event(type=EventTypes.CLIENT_AUTH, outcome="success", client_id="a")
    refused = Event(type=EventTypes.TOKEN_REFUSED, outcome="failure", client_id="a")
    anonymous = Event(type=EventTypes.LOGIN, outcome="failure")
    assert run(detector, clock, [(1.0, e) for e in (ok, refused, anonymous) * 5]) == []


def test_brute_force_counts_logins_and_mfa_by_subject() -> None:
    clock = Clock()
    detector = BruteForceDetector(failures=3, window=60, clock=clock)
    events = [
        Event(type=EventTypes.LOGIN, outcome="failure", subject="alice"),
        Event(type=EventTypes.MFA, outcome="failure", subject="alice"),
        Event(type=EventTypes.LOGIN, outcome="failure", subject="alice"),
    ]
    (alert,) = run(detector, clock, [(1.0 + i, e) for i, e in enumerate(events)])
    assert alert.subject == "alice"


def test_brute_force_memory_is_bounded() -> None:
    clock = Clock()
    detector = BruteForceDetector(failures=3, window=60, max_keys=10, clock=clock)
    run(detector, clock, [(1.0, fail(f"user{i}")) for i in range(1000)])
    assert len(detector.counter._keys) == 10


# -- failures from one IP ----------------------------------------------------------------


def test_many_failures_from_one_ip_raise_one_alert() -> None:
    clock = Clock()
    detector = IpFailuresDetector(failures=10, window=60, clock=clock)
    events = [(100.0 + i, fail(f"user{i % 3}", ip="192.0.2.50")) for i in range(12)]
    events += [(100.0 + i, denied(401, ip="192.0.2.50")) for i in range(3)]
    (alert,) = run(detector, clock, events)
    assert (alert.type, alert.severity, alert.ip) == ("ip_failures", "medium", "192.0.2.50")
    assert alert.dedup_key == "ip:192.0.2.50"


def test_ip_failures_ignore_403_and_429_denials() -> None:
    clock = Clock()
    detector = IpFailuresDetector(failures=3, window=60, clock=clock)
    events = [(1.0, denied(403)), (2.0, denied(429)), (3.0, denied(403)), (4.0, denied(429))]
    assert run(detector, clock, events) == []


# -- credential stuffing -----------------------------------------------------------------


def test_credential_stuffing_across_50_accounts_from_one_ip_raises_one_alert() -> None:
    clock = Clock()
    detector = CredentialStuffingDetector(accounts=20, window=600, clock=clock)
    attack = [(2000.0 + i, fail(f"user{i:02d}", ip="192.0.2.66")) for i in range(50)]
    alerts = run(detector, clock, attack)
    # 50 accounts: the threshold is met twice (20, 40); the manager folds the second.
    assert [a.type for a in alerts] == ["credential_stuffing", "credential_stuffing"]
    first = alerts[0]
    assert (first.ip, first.severity, first.count) == ("192.0.2.66", "high", 20)
    assert first.dedup_key == alerts[1].dedup_key == "ip:192.0.2.66"
    assert first.data["sample_accounts"] == ["user00", "user01", "user02", "user03", "user04"]


def test_stuffing_from_addresses_of_one_ipv6_64_or_ipv4_mapped_counts_as_one_source() -> None:
    # An IPv6 client owns its /64 and may pick a new address per attempt (RFC 8981).
    clock = Clock()
    detector = CredentialStuffingDetector(accounts=5, window=600, clock=clock)
    attack = [(2000.0 + i, fail(f"user{i}", ip=f"2001:db8:1:2::{i + 1:x}")) for i in range(5)]
    [alert] = run(detector, clock, attack)
    assert alert.dedup_key == "ip:2001:db8:1:2::/64"
    mapped = IpFailuresDetector(failures=2, window=60, clock=clock)
    twice = [(3000.0, fail("a", ip="::ffff:192.0.2.7")), (3001.0, fail("b", ip="192.0.2.7"))]
    [alert] = run(mapped, clock, twice)
    assert alert.dedup_key == "ip:192.0.2.7"


def test_one_account_failing_repeatedly_is_not_stuffing() -> None:
    clock = Clock()
    detector = CredentialStuffingDetector(accounts=5, window=600, clock=clock)
    assert run(detector, clock, [(1.0 + i, fail("same")) for i in range(100)]) == []


def test_stuffing_forgets_accounts_outside_the_window() -> None:
    clock = Clock()
    detector = CredentialStuffingDetector(accounts=5, window=60, clock=clock)
    spread = [(100.0 + 30 * i, fail(f"user{i}")) for i in range(20)]  # 2 per window
    assert run(detector, clock, spread) == []


def test_many_ips_with_a_few_failures_each_raise_nothing() -> None:
    clock = Clock()
    detectors = build_detectors(DetectorSettings(), clock=clock)
    alerts = []
    for i in range(200):
        clock.now = 5000.0 + i
        for detector in detectors:
            alert = detector.observe(fail(f"user{i}", ip=f"10.{i // 250}.{i % 250}.1"))
            if alert is not None:
                alerts.append(alert)
    assert alerts == []


# -- denial spikes -----------------------------------------------------------------------


def steady(start: int, minutes: int, per_minute: int, **kw: Any) -> list[tuple[float, Event]]:
    return [
        (minute * 60.0 + i * (60.0 / per_minute), denied(**kw))
        for minute in range(start, start + minutes)
        for i in range(per_minute)
    ]


def test_a_burst_of_401s_on_a_route_raises_one_spike_alert() -> None:
    clock = Clock()
    detector = DenialSpikeDetector(by="route", interval=60, z=4, min_count=20, clock=clock)
    baseline = steady(0, 30, 3)  # 3 denials a minute for half an hour
    burst = [(30 * 60.0 + i * 0.1, denied()) for i in range(100)]
    assert run(detector, clock, baseline) == []
    (alert,) = run(detector, clock, burst)
    assert (alert.type, alert.route, alert.severity) == ("denial_spike", "orders", "medium")
    assert alert.dedup_key == "route:orders"
    assert alert.count == 20  # raised as soon as the interval became an outlier
    assert alert.data["mean"] == pytest.approx(3.0, abs=0.2)
    assert alert.data["z"] >= 4


def test_spike_threshold_follows_the_baseline() -> None:
    clock = Clock()
    detector = DenialSpikeDetector(by="route", interval=60, z=4, min_count=20, clock=clock)
    busy = steady(0, 60, 100, status=429)  # a route that is always rate-limited
    # the first interval has no history and raises; after that, 100 a minute is normal
    assert len(run(detector, clock, busy)) == 1
    assert run(detector, clock, steady(60, 10, 110, status=429)) == []
    (alert,) = run(detector, clock, steady(70, 1, 300, status=429))
    assert alert.data["count"] >= 100 + 4 * 10


def test_spikes_count_only_the_configured_statuses() -> None:
    clock = Clock()
    detector = DenialSpikeDetector(by="route", min_count=5, statuses=(401,), clock=clock)
    assert run(detector, clock, [(1.0, denied(404)) for _ in range(50)]) == []


def test_spikes_per_key_are_separate_series() -> None:
    clock = Clock()
    detector = DenialSpikeDetector(by="key", interval=60, min_count=10, clock=clock)
    spread = [(1.0, denied(403, key=f"key{i % 5}")) for i in range(40)]  # 8 per key
    assert run(detector, clock, spread) == []
    (alert,) = run(detector, clock, [(2.0, denied(403, key="key9")) for _ in range(10)])
    assert (alert.key_id, alert.dedup_key) == ("key9", "key:key9")


def test_normal_scattered_denials_raise_no_spike() -> None:
    clock = Clock()
    detector = DenialSpikeDetector(by="route", clock=clock)
    pattern = [0, 2, 1, 5, 0, 3, 8, 1, 0, 4, 2, 6]
    events = [
        (minute * 60.0 + i, denied())
        for minute in range(240)
        for i in range(pattern[minute % len(pattern)])
    ]
    assert run(detector, clock, events) == []


def test_spike_detector_rejects_an_unknown_dimension() -> None:
    with pytest.raises(ValueError, match="by must be 'route' or 'key', not 'ip'"):
        DenialSpikeDetector(by="ip")


# -- new network -------------------------------------------------------------------------


def used(ip: str, key: str = "k1", outcome: str = "success") -> Event:
    return Event(type=EventTypes.TOKEN_ISSUED, outcome=outcome, key_id=key, ip=ip)  # type: ignore[arg-type]


def test_a_key_from_a_new_network_raises_one_alert() -> None:
    clock = Clock()
    detector = NewNetworkDetector(clock=clock)
    events = [(1.0, used("198.51.100.1")), (2.0, used("198.51.7.7")), (3.0, used("203.0.113.5"))]
    events += [(4.0, used("203.0.9.9")), (5.0, used("198.51.100.2"))]
    (alert,) = run(detector, clock, events)
    assert (alert.type, alert.key_id, alert.ip) == ("new_network", "k1", "203.0.113.5")
    assert alert.data["network"] == "203.0.0.0/16"
    assert alert.severity == "low"


def test_new_network_uses_48s_for_ipv6_and_ignores_failures() -> None:
    clock = Clock()
    detector = NewNetworkDetector(clock=clock)
    events = [
        (1.0, used("2001:db8:1:1::1")),
        (2.0, used("2001:db8:1:ffff::2")),
        (3.0, used("2001:db8:2::1", outcome="failure")),
        (4.0, used("not-an-ip")),
    ]
    assert run(detector, clock, events) == []
    (alert,) = run(detector, clock, [(5.0, used("2001:db8:2::1"))])
    assert alert.data["network"] == "2001:db8:2::/48"


def test_new_network_for_a_client_at_the_token_endpoint() -> None:
    clock = Clock()
    detector = NewNetworkDetector(clock=clock)
    first = Event(type=EventTypes.TOKEN_ISSUED, outcome="success", client_id="svc", ip="10.0.0.1")
    moved = Event(type=EventTypes.TOKEN_ISSUED, outcome="success", client_id="svc", ip="10.7.0.1")
    (alert,) = run(detector, clock, [(1.0, first), (2.0, moved)])
    assert alert.dedup_key == "client:svc:10.7.0.0/16"


# -- token reuse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "alert_type"),
    [(EventTypes.REFRESH_REUSE, "refresh_token_reuse"), (EventTypes.CODE_REUSE, "code_reuse")],
)
def test_token_reuse_always_alerts_high(event_type: str, alert_type: str) -> None:
    clock = Clock()
    detector = TokenReuseDetector(clock=clock)
    event = Event(
        type=event_type,
        outcome="failure",
        reason="reused",
        client_id="app",
        ip="192.0.2.1",
        data={"family": "fam-1"},
    )
    (alert,) = run(detector, clock, [(7.0, event)])
    assert (alert.type, alert.severity, alert.client_id) == (alert_type, "high", "app")
    assert alert.dedup_key == "app:fam-1"
    noise = [(8.0, fail("x")), (9.0, denied()), (10.0, used("192.0.2.1"))]
    assert run(detector, clock, noise) == []


def test_a_reported_key_leak_always_alerts_high() -> None:
    clock = Clock()
    detector = KeyLeakDetector(clock=clock)
    leaked = Event(
        type=EventTypes.KEY_LEAKED,
        outcome="success",
        reason="revoked",
        key_id="k1",
        ip="192.0.2.9",
        data={"source": "github", "status": "revoked", "prefix": "bst_abc123"},
    )
    (alert,) = run(detector, clock, [(3.0, leaked)])
    assert (alert.type, alert.severity, alert.key_id, alert.dedup_key) == (
        "api_key_leaked",
        "high",
        "k1",
        "key:k1",
    )
    assert alert.summary == "API key 'k1' was reported leaked by github and is revoked"
    assert alert.data == {"source": "github", "status": "revoked", "prefix": "bst_abc123"}
    assert run(detector, clock, [(4.0, fail("x")), (5.0, denied())]) == []


def test_build_detectors_honours_enabled_flags() -> None:
    settings = DetectorSettings.model_validate(
        {
            "brute_force": {"enabled": False},
            "denial_spike": {"per": ["key"]},
            "new_network": {"enabled": False},
        }
    )
    names = [(d.name, getattr(d, "by", None)) for d in build_detectors(settings)]
    assert names == [
        ("ip_failures", None),
        ("credential_stuffing", None),
        ("denial_spike", "key"),
        ("token_reuse", None),
        ("key_leak", None),  # always on
    ]
