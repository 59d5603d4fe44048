"""The SharedState contract, run against the in-process backend and a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from bastion.storage.shared import SharedState, SharedStateValueError, Subscription

from .conftest import OpenState

SHORT_TTL = 0.25
PAST_SHORT_TTL = 0.4


async def next_message(subscription: Subscription, timeout: float = 2.0) -> bytes:
    return await asyncio.wait_for(anext(subscription), timeout)


async def assert_no_message(subscription: Subscription, wait: float = 0.15) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(subscription), wait)


# -- get / set / delete ------------------------------------------------------------------


async def test_get_set_delete(state: SharedState) -> None:
    assert await state.get("k") is None
    await state.set("k", b"v1")
    assert await state.get("k") == b"v1"
    await state.set("k", b"\x00binary\xff")
    assert await state.get("k") == b"\x00binary\xff"
    assert await state.delete("k") is True
    assert await state.get("k") is None
    assert await state.delete("k") is False


async def test_empty_value_is_not_absent(state: SharedState) -> None:
    await state.set("empty", b"")
    assert await state.get("empty") == b""


async def test_set_with_ttl_expires(state: SharedState) -> None:
    await state.set("k", b"v", ttl=SHORT_TTL)
    assert await state.get("k") == b"v"
    remaining = await state.ttl("k")
    assert remaining is not None
    assert 0 < remaining <= SHORT_TTL
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await state.get("k") is None
    assert await state.ttl("k") is None
    assert await state.delete("k") is False


async def test_ttl_is_none_without_expiry_or_key(state: SharedState) -> None:
    assert await state.ttl("missing") is None
    await state.set("k", b"v")
    assert await state.ttl("k") is None


async def test_set_replaces_the_ttl(state: SharedState) -> None:
    await state.set("k", b"v", ttl=SHORT_TTL)
    await state.set("k", b"w")
    assert await state.ttl("k") is None
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await state.get("k") == b"w"


@pytest.mark.parametrize("ttl", [0, -1, 0.0, float("nan"), float("inf")])
async def test_non_positive_or_infinite_ttl_is_a_value_error(
    state: SharedState, ttl: float
) -> None:
    with pytest.raises(ValueError, match="ttl must be a finite number of seconds > 0"):
        await state.set("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl must be a finite number of seconds > 0"):
        await state.add("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl must be a finite number of seconds > 0"):
        await state.incr("k", ttl=ttl)
    assert await state.get("k") is None


# -- add -----------------------------------------------------------------------------------


async def test_add_first_wins(state: SharedState) -> None:
    assert await state.add("code", b"first", ttl=10) is True
    assert await state.add("code", b"second", ttl=10) is False
    assert await state.get("code") == b"first"
    remaining = await state.ttl("code")
    assert remaining is not None
    assert 9 < remaining <= 10


async def test_add_after_expiry_is_first_again(state: SharedState) -> None:
    assert await state.add("jti", b"1", ttl=SHORT_TTL) is True
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await state.add("jti", b"2", ttl=SHORT_TTL) is True
    assert await state.get("jti") == b"2"


async def test_add_does_not_overwrite_a_set_key(state: SharedState) -> None:
    await state.set("k", b"existing")
    assert await state.add("k", b"new", ttl=10) is False
    assert await state.get("k") == b"existing"
    assert await state.ttl("k") is None


async def test_add_under_concurrency_has_exactly_one_winner(state: SharedState) -> None:
    results = await asyncio.gather(
        *(state.add("dpop:jti", str(i).encode(), ttl=10) for i in range(50))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    assert await state.get("dpop:jti") == str(winner).encode()


# -- incr ------------------------------------------------------------------------------------


async def test_incr_counts_from_zero(state: SharedState) -> None:
    assert await state.incr("n") == 1
    assert await state.incr("n") == 2
    assert await state.incr("n", 5) == 7
    assert await state.incr("n", -10) == -3
    assert await state.get("n") == b"-3"
    assert await state.ttl("n") is None


async def test_incr_on_a_set_integer(state: SharedState) -> None:
    await state.set("n", b"41")
    assert await state.incr("n") == 42


async def test_incr_under_concurrency_is_exact(state: SharedState) -> None:
    results = await asyncio.gather(*(state.incr("hits", ttl=30) for _ in range(200)))
    assert sorted(results) == list(range(1, 201))
    assert await state.get("hits") == b"200"


async def test_incr_ttl_is_set_on_creation_only(state: SharedState) -> None:
    assert await state.incr("window", ttl=0.4) == 1
    first = await state.ttl("window")
    assert first is not None
    assert 0 < first <= 0.4
    await asyncio.sleep(0.1)
    assert await state.incr("window", ttl=10) == 2
    later = await state.ttl("window")
    assert later is not None
    assert later <= 0.3  # not extended to 10 s, not reset to 0.4 s
    await asyncio.sleep(0.4)
    assert await state.get("window") is None
    assert await state.incr("window", ttl=10) == 1
    fresh = await state.ttl("window")
    assert fresh is not None
    assert 9 < fresh <= 10


async def test_incr_ttl_does_not_touch_an_existing_persistent_key(state: SharedState) -> None:
    await state.set("n", b"1")
    assert await state.incr("n", ttl=10) == 2
    assert await state.ttl("n") is None


async def test_incr_on_a_non_integer_is_a_value_error(state: SharedState) -> None:
    await state.set("n", b"abc")
    with pytest.raises(SharedStateValueError) as caught:
        await state.incr("n")
    assert caught.value.code == "shared_state_value"
    assert await state.get("n") == b"abc"


async def test_incr_overflow_is_a_value_error(state: SharedState) -> None:
    await state.set("n", b"9223372036854775807")
    with pytest.raises(SharedStateValueError) as caught:
        await state.incr("n")
    assert caught.value.code == "shared_state_value"
    assert await state.get("n") == b"9223372036854775807"


# -- pub/sub ---------------------------------------------------------------------------------


async def test_publish_reaches_two_subscribers_in_order(state: SharedState) -> None:
    async with state.subscribe("revocations") as first, state.subscribe("revocations") as second:
        await state.publish("revocations", b"key-1")
        await state.publish("revocations", b"key-2")
        for subscription in (first, second):
            assert subscription.channel == "revocations"
            assert await next_message(subscription) == b"key-1"
            assert await next_message(subscription) == b"key-2"
            assert subscription.dropped == 0


async def test_await_form_and_iteration(state: SharedState) -> None:
    subscription = await state.subscribe("ch")
    try:
        for i in range(3):
            await state.publish("ch", f"m{i}".encode())
        received = []
        async for message in subscription:
            received.append(message)
            if len(received) == 3:
                break
        assert received == [b"m0", b"m1", b"m2"]
    finally:
        await subscription.close()


async def test_messages_published_before_subscribing_are_not_delivered(
    state: SharedState,
) -> None:
    await state.publish("ch", b"early")
    async with state.subscribe("ch") as subscription:
        await state.publish("ch", b"late")
        assert await next_message(subscription) == b"late"


async def test_channels_are_separate(state: SharedState) -> None:
    async with state.subscribe("a") as on_a:
        await state.publish("b", b"for b")
        await state.publish("a", b"for a")
        assert await next_message(on_a) == b"for a"


async def test_publish_without_subscribers_is_fine(state: SharedState) -> None:
    await state.publish("nobody", b"x")


async def test_closed_subscription_ends_and_others_still_receive(state: SharedState) -> None:
    async with state.subscribe("ch") as staying:
        leaving = await state.subscribe("ch")
        await leaving.close()
        await leaving.close()  # idempotent
        await state.publish("ch", b"after")
        with pytest.raises(StopAsyncIteration):
            await next_message(leaving)
        assert await next_message(staying) == b"after"


async def test_close_wakes_a_waiting_consumer(state: SharedState) -> None:
    subscription = await state.subscribe("ch")

    async def consume() -> list[bytes]:
        return [message async for message in subscription]

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await subscription.close()
    assert await asyncio.wait_for(consumer, 2) == []


async def test_closing_the_state_ends_its_subscriptions(open_state: OpenState) -> None:
    state = await open_state()
    subscription = await state.subscribe("ch")
    await state.close()
    with pytest.raises(StopAsyncIteration):
        await next_message(subscription)
    await state.close()  # idempotent


# -- prefixes ---------------------------------------------------------------------------------


async def test_prefixes_isolate_keys_and_channels(open_state: OpenState) -> None:
    one = await open_state("one:")
    two = await open_state("two:")
    assert one.namespaced("k") != two.namespaced("k")
    await one.set("k", b"one")
    await two.set("k", b"two")
    assert await one.get("k") == b"one"
    assert await two.get("k") == b"two"
    assert await one.add("code", b"x", ttl=10) is True
    assert await two.add("code", b"x", ttl=10) is True
    assert await one.incr("n") == 1
    assert await two.incr("n") == 1
    async with one.subscribe("ch") as on_one:
        await two.publish("ch", b"from two")
        await assert_no_message(on_one)
        await one.publish("ch", b"from one")
        assert await next_message(on_one) == b"from one"


async def test_namespaced_applies_the_prefix(open_state: OpenState) -> None:
    state = await open_state("x:")
    assert state.namespaced("k").endswith(":x:k")
    assert state.namespaced("k") == state.key_prefix + "k"


# -- health -----------------------------------------------------------------------------------


async def test_ping(state: SharedState) -> None:
    await state.ping()


async def test_backend_flags(state: SharedState, backend: str) -> None:
    assert state.backend == backend
    assert state.exact_across_processes is (backend == "redis")
