"""The public surface of bastion.storage.shared is pinned."""

from __future__ import annotations

import bastion.storage.shared as shared


def test_exported_members() -> None:
    assert sorted(shared.__all__) == [
        "MemorySharedState",
        "RedisSharedState",
        "SharedState",
        "SharedStateConfigError",
        "SharedStateValueError",
        "SubscribeContext",
        "Subscription",
        "is_redis",
        "open_shared_state",
    ]
    for name in shared.__all__:
        assert getattr(shared, name).__module__.startswith("bastion.storage.shared")
