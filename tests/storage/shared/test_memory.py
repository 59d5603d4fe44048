"""In-process backend specifics: expiry sweeping and the subscription drop policy."""

from __future__ import annotations

import pytest

from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import MemorySharedState, SharedStateValueError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_expired_keys_are_swept_on_write_without_being_read() -> None:
    clock = FakeClock()
    state = MemorySharedState(clock=clock)
    for i in range(1000):
        await state.add(f"jti:{i}", b"1", ttl=60)
    await state.set("persistent", b"p")
    clock.now += 61
    await state.set("trigger", b"t")
    # Only the two keys without expiry remain stored; the heap is emptied too.
    assert len(state._data) == 2
    assert state._expiries == []
    assert await state.get("persistent") == b"p"


async def test_rewritten_key_keeps_its_new_expiry_through_a_sweep() -> None:
    clock = FakeClock()
    state = MemorySharedState(clock=clock)
    await state.set("k", b"old", ttl=10)
    await state.set("k", b"new", ttl=100)
    clock.now += 11
    await state.set("trigger", b"t")  # pops the stale (old expiry) heap entry
    assert await state.get("k") == b"new"
    assert await state.ttl("k") == pytest.approx(89)


async def test_heap_of_stale_expiries_stays_bounded() -> None:
    state = MemorySharedState(clock=FakeClock())
    for _ in range(10_000):
        await state.set("hot", b"v", ttl=3600)
    assert len(state._data) == 1
    assert len(state._expiries) <= 2 * len(state._data) + 1025


async def test_expiry_is_exact_with_a_fake_clock() -> None:
    clock = FakeClock()
    state = MemorySharedState(clock=clock)
    await state.set("k", b"v", ttl=5)
    clock.now += 4.999
    assert await state.get("k") == b"v"
    assert await state.ttl("k") == pytest.approx(0.001)
    clock.now += 0.001
    assert await state.get("k") is None


async def test_full_buffer_fails_the_subscription_after_what_was_buffered() -> None:
    """A lost invalidation must not go unnoticed: overflow ends the subscription."""
    state = MemorySharedState(subscription_buffer=2)
    async with state.subscribe("ch") as subscription:
        for message in (b"1", b"2", b"3", b"4"):
            await state.publish("ch", message)
        assert subscription.dropped == 1  # b"3"; b"4" came after the failure
        assert subscription.failed
        assert await anext(subscription) == b"1"
        assert await anext(subscription) == b"2"
        with pytest.raises(SharedStateUnavailableError, match="overflowed"):
            await anext(subscription)


async def test_closed_subscriptions_are_unregistered() -> None:
    state = MemorySharedState()
    async with state.subscribe("ch"), state.subscribe("ch"):
        assert len(state._channels[state.namespaced("ch")]) == 2
    assert state._channels == {}


async def test_subscription_buffer_must_be_positive() -> None:
    state = MemorySharedState(subscription_buffer=0)
    with pytest.raises(ValueError, match="subscription buffer must be >= 1, not 0"):
        await state.subscribe("ch")


async def test_incr_rejects_what_redis_rejects() -> None:
    state = MemorySharedState()
    for raw in (b" 1", b"+1", b"01", b"1.5", b"", b"9223372036854775808"):
        await state.set("n", raw)
        with pytest.raises(SharedStateValueError, match="is not a 64-bit integer"):
            await state.incr("n")


async def test_incr_amount_must_be_an_int() -> None:
    state = MemorySharedState()
    with pytest.raises(ValueError, match="amount must be an int, not float"):
        await state.incr("n", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the signed 64-bit range"):
        await state.incr("n", 2**63)


def test_repr() -> None:
    assert repr(MemorySharedState(key_prefix="p:")) == "MemorySharedState(key_prefix='p:')"
