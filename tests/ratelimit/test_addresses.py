"""ip_bucket: the canonical form every per-IP bucket counts by."""

from __future__ import annotations

import pytest

from bastion.ratelimit import ip_bucket
from bastion.ratelimit.risk import RiskRegistry


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:c000:0201", "192.0.2.1"),
        ("2001:DB8::1", "2001:db8::/64"),
        ("2001:0db8:0000:0000:ffff:ffff:ffff:ffff", "2001:db8::/64"),
        ("2001:db8:0:1::1", "2001:db8:0:1::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
        ("x" * 100, "x" * 64),
    ],
)
def test_canonical_bucket(address: str, bucket: str) -> None:
    assert ip_bucket(address) == bucket


def test_risk_flags_match_any_spelling_of_the_flagged_address() -> None:
    risk = RiskRegistry(clock=lambda: 0.0)
    risk.flag("ip", "2001:db8:7::1", factor=4, until=60.0)
    assert risk.factor("ip", "2001:DB8:7:0::ff") == 4
    assert risk.factor("ip", "2001:db8:8::1") == 1
    risk.flag("ip", "::ffff:198.51.100.3", factor=2, until=60.0)
    assert risk.factor("ip", "198.51.100.3") == 2
    risk.clear("ip", "198.51.100.3")
    assert risk.factor("ip", "::ffff:198.51.100.3") == 1
