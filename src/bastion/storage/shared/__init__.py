"""Shared ephemeral state: replay caches, counters and invalidation broadcasts.

``open_shared_state("memory://")`` for one process, ``open_shared_state("redis://…")``
for several processes or nodes. See :mod:`bastion.storage.shared.base` for the contract.
"""

from __future__ import annotations

from bastion.storage.shared._factory import open_shared_state
from bastion.storage.shared._memory import MemorySharedState
from bastion.storage.shared._redis import RedisSharedState
from bastion.storage.shared.base import SharedState, SubscribeContext, Subscription
from bastion.storage.shared.errors import SharedStateConfigError, SharedStateValueError

__all__ = [
    "MemorySharedState",
    "RedisSharedState",
    "SharedState",
    "SharedStateConfigError",
    "SharedStateValueError",
    "SubscribeContext",
    "Subscription",
    "open_shared_state",
]
