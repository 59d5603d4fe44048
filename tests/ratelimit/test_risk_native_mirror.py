"""Risk flags reach the native data plane, which then defers the flagged requester to Python."""

from __future__ import annotations

import time

import pytest

from bastion import _native
from bastion.ratelimit.risk import RiskRegistry


def test_a_flag_is_mirrored_with_its_canonical_value_and_cleared_early() -> None:
    registry = RiskRegistry()
    until = time.time() + 60
    registry.flag("ip", "2001:DB8::7", factor=4, until=until)
    registry.flag("key", "key-mirror-1", factor=2, until=until)
    now = time.time()
    # Addresses by their bucket, exactly as the native path computes it.
    assert _native.risk_flagged("ip", "2001:db8::/64", now)
    assert not _native.risk_flagged("ip", "2001:DB8::7", now)
    assert _native.risk_flagged("key", "key-mirror-1", now)
    assert not _native.risk_flagged("subject", "key-mirror-1", now)
    registry.clear("key", "key-mirror-1")
    registry.clear("ip", "2001:db8::1")
    assert not _native.risk_flagged("key", "key-mirror-1", now)
    assert not _native.risk_flagged("ip", "2001:db8::/64", now)


def test_an_expired_flag_no_longer_defers() -> None:
    _native.risk_flag("subject", "user-expiring", time.time() + 0.05)
    assert _native.risk_flagged("subject", "user-expiring", time.time())
    assert not _native.risk_flagged("subject", "user-expiring", time.time() + 1)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match='unknown risk kind "route"'):
        _native.risk_flag("route", "r", time.time() + 1)
