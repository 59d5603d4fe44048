"""Risk flags reach the native data plane with their factor, merged as Python merges them."""

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


def test_an_expired_flag_no_longer_tightens() -> None:
    now = time.time()
    _native.risk_flag("subject", "user-expiring", now + 0.05, 3, now)
    assert _native.risk_flagged("subject", "user-expiring", time.time())
    assert _native.risk_factor("subject", "user-expiring", time.time()) == 3
    assert not _native.risk_flagged("subject", "user-expiring", time.time() + 1)
    assert _native.risk_factor("subject", "user-expiring", time.time() + 1) == 1


def test_factors_merge_as_the_registry_merges_them() -> None:
    clock = [1_000.0]
    registry = RiskRegistry(clock=lambda: clock[0])
    registry.flag("client", "client-merge", factor=4, until=1_100.0)
    registry.flag("client", "client-merge", factor=2, until=1_200.0)  # stronger kept, later end
    for now in (1_050.0, 1_150.0):
        assert registry.factor("client", "client-merge") == 4
        assert _native.risk_factor("client", "client-merge", now) == 4
    clock[0] = 1_300.0  # expired, never read since: a new flag replaces it
    registry.flag("client", "client-merge", factor=2, until=1_400.0)
    assert registry.factor("client", "client-merge") == 2
    assert _native.risk_factor("client", "client-merge", 1_350.0) == 2


def test_an_unknown_kind_or_a_small_factor_is_refused() -> None:
    now = time.time()
    with pytest.raises(ValueError, match='unknown risk kind "route"'):
        _native.risk_flag("route", "r", now + 1, 2, now)
    with pytest.raises(ValueError, match="factor must be a whole number >= 2, not 1"):
        _native.risk_flag("key", "r", now + 1, 1, now)
