"""Whether a subscription is open: what a test waits for instead of sleeping for it.

A service's ``run`` opens its invalidation subscription in the background; a change
published before that is missed, so a test waits until the shared state counts the
subscriber (``wait_until_async(lambda: subscribed(state, channel))``).
"""

from __future__ import annotations

from bastion.storage.shared import MemorySharedState, SharedState


async def subscribers(state: SharedState, channel: str) -> int:
    """How many subscriptions to ``channel`` are open where ``state`` publishes.

    In process: the memory state's own subscribers; Redis: the server's count
    (``PUBSUB NUMSUB``), every process sharing the Redis and the prefix.
    """
    full_channel = state.namespaced(channel)
    if isinstance(state, MemorySharedState):
        return len(state._channels.get(full_channel, ()))
    client = getattr(state, "client", None)
    if client is None:
        raise TypeError(f"no subscriber count for {state!r}")
    counts = await client.pubsub_numsub(full_channel)
    return int(counts[0][1])


async def subscribed(state: SharedState, channel: str) -> bool:
    """Whether at least one subscription to ``channel`` is open (see :func:`subscribers`)."""
    return await subscribers(state, channel) > 0
