"""NodeCount: the heartbeat that tells the fail-open fallback how many nodes share a limit."""

from __future__ import annotations

import pytest

from bastion.ratelimit.nodes import NodeCount
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import MemorySharedState, RedisSharedState, SharedState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _three_nodes(shared: SharedState, clock: Clock) -> None:
    nodes = [NodeCount(shared, f"n{i}", interval=5.0, clock=clock) for i in range(3)]
    assert [await node.beat() for node in nodes] == [1, 2, 3]  # the current slot fills up
    for _ in range(4):  # beating again within a slot counts each node once
        assert await nodes[0].beat() == 3
    clock.now += 5  # next slot: the previous, complete one still says 3
    assert await nodes[1].beat() == 3
    clock.now += 5  # n2 stopped: its absence shows once a whole slot has passed without it
    for node in nodes[:2]:
        await node.beat()
    clock.now += 5
    assert await nodes[0].beat() == 2


async def test_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    await _three_nodes(MemorySharedState(clock=clock), clock)


async def test_redis(redis_url: str, redis_prefix: str) -> None:
    state = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
    try:
        await _three_nodes(state, Clock())
    finally:
        await state.close()


async def test_outage_keeps_the_last_count() -> None:
    class Down(MemorySharedState):
        async def add(self, key: str, value: bytes, *, ttl: float) -> bool:
            raise SharedStateUnavailableError("down")

    node = NodeCount(Down(), "n1")
    node.count = 3
    with pytest.raises(SharedStateUnavailableError):
        await node.beat()
    assert node.count == 3


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="heartbeat interval must be > 0 seconds, not 0"):
        NodeCount(MemorySharedState(), "n", interval=0)
