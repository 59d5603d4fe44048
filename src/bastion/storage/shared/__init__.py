"""Shared ephemeral state: replay caches, counters and invalidation broadcasts.

``open_shared_state("memory://")`` for one process, ``open_shared_state("redis://…")``
for several processes or nodes. See :mod:`bastion.storage.shared.base` for the contract.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TypeGuard

from bastion.storage.shared._factory import open_shared_state
from bastion.storage.shared._memory import MemorySharedState
from bastion.storage.shared.base import SharedState, SubscribeContext, Subscription
from bastion.storage.shared.errors import SharedStateConfigError, SharedStateValueError

if TYPE_CHECKING:  # redis-py loads only for shared: redis:// (__getattr__ below)
    from bastion.storage.shared._redis import RedisSharedState

_REDIS_MODULE = "bastion.storage.shared._redis"


def __getattr__(name: str) -> Any:
    # redis-py (and the OpenTelemetry SDK it imports, ~15 MiB resident together) loads
    # on first use of the Redis backend, not with this package: a node on memory://
    # never needs it (bench/server/idle_rss.py).
    if name == "RedisSharedState":
        from bastion.storage.shared._redis import RedisSharedState

        return RedisSharedState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_redis(state: SharedState) -> TypeGuard[RedisSharedState]:
    """Whether ``state`` is the Redis backend; never imports redis-py to tell."""
    # Only an opened Redis backend can be one, and opening it imported the module.
    module = sys.modules.get(_REDIS_MODULE)
    return module is not None and isinstance(state, module.RedisSharedState)


__all__ = [
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
