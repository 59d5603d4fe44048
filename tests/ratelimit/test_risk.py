"""The risk registry (ratelimit/risk.py): flags expire, the strongest holds; on a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bastion.ratelimit.risk import RiskRegistry


def test_risk_flags_expire_and_keep_the_strongest() -> None:
    clock = SimpleNamespace(now=100.0)
    risk = RiskRegistry(clock=lambda: clock.now)
    assert not risk
    assert risk.factor("ip", "203.0.113.9") == 1
    risk.flag("ip", "203.0.113.9", 4, clock.now + 60)
    risk.flag("ip", "203.0.113.9", 2, clock.now + 120)
    assert risk and risk.factor("ip", "203.0.113.9") == 4
    assert risk.factor("key", "203.0.113.9") == 1
    clock.now += 100
    assert risk.factor("ip", "203.0.113.9") == 4  # the longer of the two deadlines
    clock.now += 21
    assert risk.factor("ip", "203.0.113.9") == 1
    assert not risk
    with pytest.raises(ValueError, match="factor must be a whole number >= 2, not 1"):
        risk.flag("key", "k", 1, clock.now + 1)
    with pytest.raises(ValueError, match="until must be in the future"):
        risk.flag("key", "k", 2, clock.now)
