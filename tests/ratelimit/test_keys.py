"""Per-key limits: compiling stored entries, validating overrides, overrides across nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bastion.ratelimit import Limit, MemoryLimiter
from bastion.ratelimit.keys import (
    OVERRIDE_PREFIX,
    InvalidKeyLimitError,
    KeyLimitOverrides,
    compile_key_limits,
    describe,
    key_checks,
    parse_override,
)
from bastion.storage import Database
from bastion.storage.shared import MemorySharedState, RedisSharedState, SharedState


def test_compile_dedupes_and_memoises() -> None:
    entries = ({"rate": "10/second"}, {"rate": "10/second"}, {"rate": "100/minute", "burst": 5})
    limits = compile_key_limits(entries)
    assert limits == (Limit(10, 1.0), Limit(100, 60.0, 5))
    assert compile_key_limits(entries) is limits


def test_buckets_name_the_key_and_the_limit() -> None:
    checks = key_checks("k1", (Limit(10, 1.0), Limit(100, 60.0, 5)))
    assert [key for key, _ in checks] == ["apikey:k1:10/second", "apikey:k1:100/minute~5"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [],
            'limits: give at least one limit such as {"rate": "100/minute"} '
            "(to remove the override, delete it)",
        ),
        (
            [{"rate": 5}],
            "limits[0]: rate must be a string like '100/minute' and burst a whole number",
        ),
        (
            [{"rate": "5/minute", "burst": True}],
            "limits[0]: rate must be a string like '100/minute' and burst a whole number",
        ),
        (
            [{"rate": "5/minute"}, {"rate": "5 per minute"}],
            "limits[1]: invalid rate limit '5 per minute': expected '<count>/<unit>' such as "
            "'100/minute' (units: second, minute, hour, day)",
        ),
        ([{"rate": "5/minute", "burst": 0}], "limits[0]: burst must be a positive integer, not 0"),
        ([{"rate": "1/second"}] * 21, "at most 20 limits per key, not 21"),
    ],
)
def test_bad_overrides_name_the_entry(entries: list[dict[str, object]], message: str) -> None:
    with pytest.raises(InvalidKeyLimitError) as info:
        parse_override(entries)
    assert (info.value.code, info.value.status, info.value.detail) == (
        "invalid_rate_limit",
        400,
        message,
    )


async def test_describe_reads_without_consuming() -> None:
    limiter = MemoryLimiter(clock=lambda: 10**12)
    overrides = KeyLimitOverrides(None, MemorySharedState())
    doc = await describe("k", [{"rate": "4/minute"}], overrides, limiter)
    assert doc["usage"] == [{"rate": "4/minute", "burst": 4, "remaining": 4, "reset": 0.0}]
    await limiter.check(key_checks("k", (Limit(4, 60.0),)))
    for _ in range(3):
        doc = await describe("k", [{"rate": "4/minute"}], overrides, limiter)
        assert doc["usage"] == [{"rate": "4/minute", "burst": 4, "remaining": 3, "reset": 15.0}]
    assert (await describe("k", [], overrides, None))["usage"] is None


async def test_stored_garbage_is_ignored(db: Database) -> None:
    await db.settings.set(OVERRIDE_PREFIX + "bad", {"limits": [{"rate": "nope"}]})
    await db.settings.set(OVERRIDE_PREFIX + "bad2", ["not", "an", "object"])
    await db.settings.set(OVERRIDE_PREFIX + "good", {"limits": [{"rate": "3/hour"}]})
    await db.settings.set("unrelated", {"x": 1})
    overrides = KeyLimitOverrides(db, MemorySharedState())
    await overrides.load()
    assert (overrides.get("bad"), overrides.get("bad2")) == (None, None)
    assert overrides.get("good") == (Limit(3, 3600.0),)
    assert len(overrides) == 1


async def wait_for(condition: Callable[[], bool]) -> bool:
    for _ in range(300):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


async def _propagation(db: Database, shared: SharedState, other: SharedState) -> None:
    writer = KeyLimitOverrides(db, shared)
    reader = KeyLimitOverrides(db, other)
    await writer.set("before", (Limit(1, 1.0),))
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop, backoff=0.05))
    try:
        # The reader loads everything once subscribed: from then on it follows announcements.
        assert await wait_for(lambda: reader.get("before") is not None)
        await writer.set("k9", (Limit(7, 1.0),))
        assert await wait_for(lambda: reader.get("k9") == (Limit(7, 1.0),))
        await writer.clear("k9")
        assert await wait_for(lambda: reader.get("k9") is None)
    finally:
        stop.set()
        await task


async def test_override_reaches_another_node_in_process(db: Database) -> None:
    shared = MemorySharedState()
    await _propagation(db, shared, shared)


async def test_override_reaches_another_node_through_redis(
    db: Database, redis_url: str, redis_prefix: str
) -> None:
    one = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
    two = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
    try:
        await _propagation(db, one, two)
    finally:
        await one.close()
        await two.close()
