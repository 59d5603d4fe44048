"""ApiKeyService: keys shown once and stored as digests, verification on the hot path,
expiry / revocation / disabling / rotation grace, IP allow-lists, batched last-used,
leak reports, cache invalidation across services — on SQLite and the real PostgreSQL,
and across processes over the real Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from _support.subscriptions import subscribed
from _support.waiting import wait_until_async
from bastion.apikeys import (
    API_KEYS_CHANNEL,
    ApiKeyIPNotAllowedError,
    ApiKeyService,
    ApiKeySpec,
    ApiKeySpecError,
    ApiKeyStateError,
    InvalidApiKeyError,
    api_key_status,
    api_key_view,
)
from bastion.crypto import API_KEY_REGEX
from bastion.settings import Settings
from bastion.storage import ApiKey, Database, NotFoundError
from bastion.storage.shared import SharedState, open_shared_state

# -- fixtures: `db` comes from tests/conftest.py (SQLite and PostgreSQL) ----------------------


class CountingRepository:
    """Passes every call to the real repository and counts it (a spy, not a mock)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.batches: list[list[tuple[str, datetime, str | None]]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "touch_last_used_many":
                self.batches.append(list(args[0]))
            return await attribute(*args, **kwargs)

        return counted


@pytest.fixture
async def shared() -> AsyncIterator[SharedState]:
    state = await open_shared_state("memory://")
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def repo(db: Database) -> CountingRepository:
    spy = CountingRepository(db.api_keys)
    db.api_keys = spy  # type: ignore[assignment]
    return spy


@pytest.fixture
def service(db: Database, repo: CountingRepository, shared: SharedState) -> ApiKeyService:
    return ApiKeyService(db, Settings(), shared)


async def reason_of(awaitable: Awaitable[Any]) -> str:
    with pytest.raises(InvalidApiKeyError) as info:
        await awaitable
    error = info.value
    # Outward every refusal is the same document.
    assert (error.code, error.status) == ("invalid_api_key", 401)
    assert error.detail == "the API key is not valid"
    assert error.www_authenticate == 'Bearer realm="bastion", error="invalid_token"'
    problem = error.to_problem()
    assert problem == {
        "type": "urn:bastion:problem:invalid_api_key",
        "title": "Invalid API key",
        "status": 401,
        "detail": "the API key is not valid",
        "reason": "invalid_api_key",
    }
    return str(error.reason)


def later(seconds: float) -> float:
    return time.time() + seconds


# -- create -----------------------------------------------------------------------------------


async def test_create_returns_key_once_and_stores_only_digest_and_prefix(
    service: ApiKeyService, db: Database
) -> None:
    record, key = await service.create(
        ApiKeySpec(
            name=" ci ",
            owner_type="user",
            owner_id="u1",
            scopes=["orders:read", "orders:read", "orders:write"],
            routes=["orders"],
            rate_limits=[{"rate": "100/minute", "burst": 10}],
            ip_allow=["10.1.2.3/8", "2001:db8::1"],
            metadata={"team": "billing"},
        )
    )
    import re

    assert re.fullmatch(API_KEY_REGEX, key) and key.startswith("bst_")
    assert record.digest == hashlib.sha256(key.encode()).hexdigest()
    assert record.prefix == key[:10]
    assert record.name == "ci"
    assert record.scopes == ("orders:read", "orders:write")
    assert record.ip_allow == ("10.0.0.0/8", "2001:db8::1/128")
    assert record.rate_limits == ({"rate": "100/minute", "burst": 10},)
    stored = await db.api_keys.get(record.id)
    assert stored == record
    # The key is nowhere in the stored record (nor its secret part).
    for member in dataclasses.fields(stored):
        assert key[10:] not in repr(getattr(stored, member.name))
    assert key not in repr(stored)
    view = api_key_view(stored)
    assert "digest" not in view and key not in repr(view)
    assert view["status"] == "active" and view["prefix"] == record.prefix
    # There is no way to get the key back.
    assert await service.get(record.id) == record


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ApiKeySpec(name=""), "name"),
        (ApiKeySpec(name="x" * 256), "name"),
        (ApiKeySpec(name="a", owner_type="robot", owner_id="x"), "owner_type"),
        (ApiKeySpec(name="a", owner_type="user"), "owner_id"),
        (ApiKeySpec(name="a", owner_id="x"), "owner_type"),
        (ApiKeySpec(name="a", scopes=["has space"]), "scopes"),
        (ApiKeySpec(name="a", scopes="orders:read"), "scopes"),
        (ApiKeySpec(name="a", routes=[""]), "routes"),
        (ApiKeySpec(name="a", ip_allow=["10.0.0.300"]), "ip_allow"),
        (ApiKeySpec(name="a", rate_limits=[{"rate": "fast"}]), "rate_limits"),
        (ApiKeySpec(name="a", rate_limits=[{"rate": "5/minute", "burst": 0}]), "rate_limits"),
        (ApiKeySpec(name="a", metadata={"x": float("nan")}), "metadata"),
        (ApiKeySpec(name="a", metadata={"x": "\x00"}), "metadata"),
        (ApiKeySpec(name="a", expires_at=datetime(2020, 1, 1)), "expires_at"),
        (ApiKeySpec(name="a", expires_at=datetime(2020, 1, 1, tzinfo=UTC)), "expires_at"),
    ],
)
async def test_invalid_specs_name_the_field(
    service: ApiKeyService, repo: CountingRepository, spec: ApiKeySpec, field: str
) -> None:
    with pytest.raises(ApiKeySpecError) as info:
        await service.create(spec)
    assert (info.value.code, info.value.status, info.value.field) == (
        "invalid_api_key_metadata",
        400,
        field,
    )
    assert info.value.detail.startswith(f"{field}: ")
    assert repo.calls["create"] == 0


async def test_environment_tag_and_pepper_from_settings(db: Database, shared: SharedState) -> None:
    settings = Settings.model_validate({"api_keys": {"environment": "live", "pepper": "p" * 32}})
    service = ApiKeyService(db, settings, shared)
    record, key = await service.create(ApiKeySpec(name="a"))
    assert key.startswith("bst_live_") and record.prefix == key[:15]
    assert record.digest == hmac.new(b"p" * 32, key.encode(), hashlib.sha256).hexdigest()
    assert (await service.verify(key)).id == record.id
    # Rotation keeps the key's tag.
    successor, new_key = await service.rotate(record.id)
    assert new_key.startswith("bst_live_") and successor.rotated_from == record.id
    # Another pepper cannot find the key: the digest is different.
    other = ApiKeyService(db, Settings.model_validate({"api_keys": {"pepper": "q" * 32}}), shared)
    assert await reason_of(other.verify(key)) == "unknown"


# -- verify -----------------------------------------------------------------------------------


async def test_verify_returns_the_record_and_serves_repeats_from_memory(
    service: ApiKeyService, repo: CountingRepository
) -> None:
    record, key = await service.create(ApiKeySpec(name="a", scopes=["x"]))
    for _ in range(5):
        assert await service.verify(key) == record
    assert repo.calls["find_by_digest"] == 1
    assert repo.calls["touch_last_used"] == repo.calls["touch_last_used_many"] == 0


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "malformed"),
        ("bst_short", "malformed"),
        ("Bearer bst_" + "a" * 38, "malformed"),
        ("bst_" + "a" * 38, "bad_checksum"),
    ],
)
async def test_malformed_and_bad_checksum_never_touch_the_database(
    service: ApiKeyService, repo: CountingRepository, key: str, reason: str
) -> None:
    assert await reason_of(service.verify(key)) == reason
    assert sum(repo.calls.values()) == 0


async def test_a_one_character_typo_is_refused_without_io(
    service: ApiKeyService, repo: CountingRepository
) -> None:
    _, key = await service.create(ApiKeySpec(name="a"))
    calls = sum(repo.calls.values())
    typo = key[:12] + ("b" if key[12] != "b" else "c") + key[13:]
    assert await reason_of(service.verify(typo)) == "bad_checksum"
    assert sum(repo.calls.values()) == calls


async def test_unknown_key_is_remembered_briefly(
    service: ApiKeyService, repo: CountingRepository
) -> None:
    from bastion.crypto import generate_api_key

    key = generate_api_key()
    assert await reason_of(service.verify(key)) == "unknown"
    assert await reason_of(service.verify(key)) == "unknown"
    assert repo.calls["find_by_digest"] == 1


class RecordingMirror:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def found(self, key: Any, ttl: float) -> None:
        self.events.append(("found", key.id))

    def refused(self, digest: str, ttl: float) -> None:
        self.events.append(("refused", digest))

    def invalidated(self, key_id: str | None) -> None:
        self.events.append(("invalidated", key_id))

    def used(self) -> list[tuple[str, float]]:
        return []


async def test_look_up_fills_the_mirrors_without_judging(
    service: ApiKeyService, repo: CountingRepository
) -> None:
    from bastion.crypto import generate_api_key

    mirror = RecordingMirror()
    service.mirror(mirror)
    record, key = await service.create(ApiKeySpec(name="a"))
    await service.revoke(record.id)
    mirror.events.clear()
    # A revoked key's record is mirrored all the same (the mirror judges it), once read.
    assert (await service.look_up(key)).id == record.id
    assert mirror.events == [("found", record.id)]
    # Held here already: mirrored again, without a second read, and never marked used.
    assert (await service.look_up(key)).id == record.id
    assert mirror.events == [("found", record.id)] * 2
    assert repo.calls["find_by_digest"] == 1
    assert service._last_used == {}
    unknown = generate_api_key()
    assert await reason_of(service.look_up(unknown)) == "unknown"
    assert mirror.events[-1] == ("refused", service.digest(unknown))
    assert await reason_of(service.look_up("bst_" + "a" * 38)) == "bad_checksum"
    assert mirror.events[-1] == ("refused", service.digest("bst_" + "a" * 38))


async def test_expiry_is_checked_on_every_call(service: ApiKeyService) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    record, key = await service.create(ApiKeySpec(name="a", expires_at=expires))
    assert record.expires_at == expires
    await service.verify(key)
    assert await reason_of(service.verify(key, now=expires.timestamp())) == "expired"
    assert await reason_of(service.verify(key, now=later(7200))) == "expired"
    assert api_key_status(record, expires) == "expired"
    # Extending the expiry takes effect at once; removing it too.
    await service.update(record.id, expires_at=expires + timedelta(days=1))
    await service.verify(key, now=later(7200))
    await service.update(record.id, expires_at=None)
    await service.verify(key, now=later(10**8))


async def test_revoked_key_is_refused_and_stays_revoked(service: ApiKeyService) -> None:
    record, key = await service.create(ApiKeySpec(name="a"))
    await service.verify(key)  # cached now
    revoked = await service.revoke(record.id)
    assert revoked.revoked_at is not None and api_key_status(revoked) == "revoked"
    assert await reason_of(service.verify(key)) == "revoked"
    again = await service.revoke(record.id)
    assert again.revoked_at == revoked.revoked_at
    await service.enable(record.id)
    assert await reason_of(service.verify(key)) == "revoked"
    with pytest.raises(ApiKeyStateError) as info:
        await service.rotate(record.id)
    assert (info.value.code, info.value.status) == ("api_key_state_conflict", 409)


async def test_disable_and_enable(service: ApiKeyService) -> None:
    record, key = await service.create(ApiKeySpec(name="a"))
    await service.verify(key)
    assert (await service.disable(record.id)).disabled
    assert await reason_of(service.verify(key)) == "disabled"
    assert not (await service.enable(record.id)).disabled
    await service.verify(key)
    await service.update(record.id, disabled=True)
    assert await reason_of(service.verify(key)) == "disabled"


async def test_deleted_key_is_unknown(service: ApiKeyService) -> None:
    record, key = await service.create(ApiKeySpec(name="a"))
    await service.verify(key)
    await service.delete(record.id)
    assert await reason_of(service.verify(key)) == "unknown"
    with pytest.raises(NotFoundError):
        await service.get(record.id)
    with pytest.raises(NotFoundError):
        await service.delete(record.id)


@pytest.mark.parametrize("key_id", ["a\x00b", "\udcff", "x" * 65, ""])
async def test_ids_no_key_can_have_are_not_found(service: ApiKeyService, key_id: str) -> None:
    for call in (
        service.get(key_id),
        service.revoke(key_id),
        service.disable(key_id),
        service.rotate(key_id),
        service.delete(key_id),
        service.update(key_id, name="x"),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_rotation_both_work_until_grace_ends_then_only_the_new(
    service: ApiKeyService,
) -> None:
    record, old_key = await service.create(
        ApiKeySpec(name="a", owner_type="client", owner_id="c1", scopes=["s"], routes=["r"])
    )
    start = datetime.now(UTC)
    successor, new_key = await service.rotate(record.id, grace=3600, now=start)
    assert new_key != old_key
    assert successor.rotated_from == record.id
    assert (successor.name, successor.owner_id, successor.scopes, successor.routes) == (
        "a",
        "c1",
        ("s",),
        ("r",),
    )
    old = await service.get(record.id)
    assert old.grace_until == start + timedelta(hours=1)
    assert api_key_status(old, start) == "grace"
    t = start.timestamp()
    for now in (t, t + 3599):
        assert (await service.verify(old_key, now=now)).id == record.id
        assert (await service.verify(new_key, now=now)).id == successor.id
    for now in (t + 3600, t + 10**6):
        assert await reason_of(service.verify(old_key, now=now)) == "grace_ended"
        assert (await service.verify(new_key, now=now)).id == successor.id
    assert api_key_status(old, start + timedelta(hours=2)) == "rotated"
    with pytest.raises(ApiKeyStateError):
        await service.rotate(record.id)
    # The successor can be rotated in its turn; grace 0 ends it at once.
    third, third_key = await service.rotate(successor.id, grace=0)
    assert await reason_of(service.verify(new_key)) == "grace_ended"
    await service.verify(third_key)
    assert third.rotated_from == successor.id


async def test_rotation_grace_defaults_to_settings_and_is_validated(
    db: Database, shared: SharedState
) -> None:
    service = ApiKeyService(
        db, Settings.model_validate({"api_keys": {"default_grace": "2h"}}), shared
    )
    record, _ = await service.create(ApiKeySpec(name="a"))
    start = datetime.now(UTC)
    await service.rotate(record.id, now=start)
    assert (await service.get(record.id)).grace_until == start + timedelta(hours=2)
    other, _ = await service.create(ApiKeySpec(name="b"))
    for bad in (-1, float("inf"), float("nan"), True):
        with pytest.raises(ApiKeySpecError) as info:
            await service.rotate(other.id, grace=bad)
        assert info.value.field == "grace"


async def test_ip_allow_list(service: ApiKeyService) -> None:
    _, key = await service.create(
        ApiKeySpec(name="a", ip_allow=["203.0.113.0/24", "2001:db8::/32"])
    )
    for ip in ("203.0.113.7", "2001:db8::1", "::ffff:203.0.113.9"):
        await service.verify(key, ip=ip)
    refused: tuple[str | None, ...] = ("198.51.100.1", None, "not-an-ip", "2001:db9::1")
    for address in refused:
        with pytest.raises(ApiKeyIPNotAllowedError) as info:
            await service.verify(key, ip=address)
        error = info.value
        assert (error.code, error.status, error.reason) == (
            "api_key_ip_not_allowed",
            403,
            "ip_not_allowed",
        )
        assert error.detail == "the API key may not be used from this address"
    _, open_key = await service.create(ApiKeySpec(name="b"))
    await service.verify(open_key, ip=None)
    await service.verify(open_key, ip="198.51.100.1")


async def test_update_changes_members_and_refuses_others(service: ApiKeyService) -> None:
    record, key = await service.create(ApiKeySpec(name="a", scopes=["x"]))
    await service.verify(key)
    updated = await service.update(record.id, name="b", scopes=["y"], routes=["r"])
    assert (updated.name, updated.scopes, updated.routes) == ("b", ("y",), ("r",))
    # The cached record is refreshed at once.
    assert (await service.verify(key)).scopes == ("y",)
    for member in ("digest", "owner_id", "revoked_at", "id"):
        with pytest.raises(ApiKeySpecError) as info:
            await service.update(record.id, **{member: "x"})
        assert info.value.field == member
    with pytest.raises(ApiKeySpecError):
        await service.update(record.id, disabled="yes")
    assert await service.update(record.id) == updated
    with pytest.raises(NotFoundError):
        await service.update("0" * 32, name="x")


async def test_list_by_owner(service: ApiKeyService) -> None:
    a, _ = await service.create(ApiKeySpec(name="a", owner_type="user", owner_id="u1"))
    b, _ = await service.create(ApiKeySpec(name="b", owner_type="user", owner_id="u2"))
    c, _ = await service.create(ApiKeySpec(name="c"))
    assert [k.id for k in (await service.list()).items] == [a.id, b.id, c.id]
    page = await service.list(owner_type="user", owner_id="u2")
    assert [k.id for k in page.items] == [b.id]
    first = await service.list(limit=2)
    assert len(first.items) == 2 and first.next_cursor is not None
    rest = await service.list(limit=2, cursor=first.next_cursor)
    assert [k.id for k in rest.items] == [c.id]


# -- last used ---------------------------------------------------------------------------------


async def test_last_used_is_flushed_in_one_batch(
    service: ApiKeyService, repo: CountingRepository, db: Database
) -> None:
    keys = [await service.create(ApiKeySpec(name=f"k{i}")) for i in range(3)]
    t = time.time()
    for i in range(20):
        for _, key in keys:
            await service.verify(key, ip=f"10.0.0.{i}", now=t + i)
    assert repo.calls["touch_last_used_many"] == 0
    assert await service.flush_last_used() == 3
    assert repo.calls["touch_last_used_many"] == 1
    assert repo.calls["touch_last_used"] == 0
    assert len(repo.batches[0]) == 3
    for record, _ in keys:
        stored = await db.api_keys.get(record.id)
        assert stored.last_used_ip == "10.0.0.19"
        assert stored.last_used_at is not None
        assert abs(stored.last_used_at.timestamp() - (t + 19)) < 0.01
    # Nothing new: nothing written.
    assert await service.flush_last_used() == 0
    assert repo.calls["touch_last_used_many"] == 1


async def test_run_flushes_periodically_and_at_stop(
    service: ApiKeyService, repo: CountingRepository, db: Database
) -> None:
    record, key = await service.create(ApiKeySpec(name="a"))
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop, flush_interval=0.05))
    try:
        await service.verify(key, ip="192.0.2.1")

        async def flushed() -> bool:  # written, not just begun (the call is counted first)
            return (await db.api_keys.get(record.id)).last_used_ip == "192.0.2.1"

        await wait_until_async(flushed, "the periodic flush")
        assert repo.calls["touch_last_used_many"]
        await service.verify(key, ip="192.0.2.2")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert (await db.api_keys.get(record.id)).last_used_ip == "192.0.2.2"


async def test_touch_last_used_many_never_moves_backwards(db: Database) -> None:
    """Storage: the batched write used by the flush (one transaction, forwards only)."""
    a = await db.api_keys.create(ApiKey(digest="a" * 64, prefix="bst_a"))
    b = await db.api_keys.create(ApiKey(digest="b" * 64, prefix="bst_b"))
    t1 = datetime(2025, 1, 1, tzinfo=UTC)
    t2 = t1 + timedelta(minutes=1)
    await db.api_keys.touch_last_used_many([(a.id, t2, "10.0.0.2"), (b.id, t1, None)])
    await db.api_keys.touch_last_used_many(
        [(a.id, t1, "10.0.0.1"), (b.id, t2, "::1"), ("0" * 32, t2, None)]
    )
    await db.api_keys.touch_last_used_many([])
    stored_a, stored_b = await db.api_keys.get(a.id), await db.api_keys.get(b.id)
    assert (stored_a.last_used_at, stored_a.last_used_ip) == (t2, "10.0.0.2")
    assert (stored_b.last_used_at, stored_b.last_used_ip) == (t2, "::1")


# -- leak reports -------------------------------------------------------------------------------


async def test_report_leaks_revokes_found_keys(service: ApiKeyService) -> None:
    live, live_key = await service.create(ApiKeySpec(name="a"))
    gone, gone_key = await service.create(ApiKeySpec(name="b"))
    await service.revoke(gone.id)
    await service.verify(live_key)  # cached: the report must still take effect at once
    from bastion.crypto import generate_api_key

    stranger = generate_api_key()
    results = await service.report_leaks(
        [live_key, gone_key, stranger, "bst_nope", live_key], source="github"
    )
    assert results == [
        {"prefix": live.prefix, "id": live.id, "status": "revoked"},
        {"prefix": gone.prefix, "id": gone.id, "status": "already_revoked"},
        {"prefix": stranger[:10], "id": None, "status": "unknown"},
        {"prefix": None, "id": None, "status": "invalid"},
        {"prefix": live.prefix, "id": live.id, "status": "already_revoked"},
    ]
    assert await reason_of(service.verify(live_key)) == "revoked"
    for result in results:
        assert live_key not in repr(result) and gone_key not in repr(result)
    with pytest.raises(ApiKeySpecError):
        await service.report_leaks([stranger] * 1001)


# -- invalidation across services ---------------------------------------------------------------


async def _revocation_across_services(
    db: Database, state_a: SharedState, state_b: SharedState
) -> None:
    settings = Settings()
    writer = ApiKeyService(db, settings, state_a)
    reader = ApiKeyService(db, settings, state_b)
    record, key = await writer.create(ApiKeySpec(name="a"))
    other, other_key = await writer.create(ApiKeySpec(name="b"))
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        await wait_until_async(lambda: subscribed(state_b, API_KEYS_CHANNEL), "the subscription")
        await reader.verify(key)
        await reader.verify(other_key)

        async def refused(key: str, reason: str) -> None:
            for _ in range(100):
                try:
                    await reader.verify(key)
                except InvalidApiKeyError as error:
                    assert error.reason == reason
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"{reason} did not reach the other service")

        await writer.revoke(record.id)
        await refused(key, "revoked")
        await writer.disable(other.id)
        await refused(other_key, "disabled")
        await writer.enable(other.id)
        for _ in range(100):
            try:
                await reader.verify(other_key)
                break
            except InvalidApiKeyError:
                await asyncio.sleep(0.02)
        await reader.verify(other_key)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_revocation_reaches_another_service_in_process(
    db: Database, shared: SharedState
) -> None:
    await _revocation_across_services(db, shared, shared)


@pytest.mark.redis
async def test_revocation_reaches_another_node_over_redis(
    db: Database, redis_url: str, redis_prefix: str
) -> None:
    a = await open_shared_state(redis_url, key_prefix=redis_prefix)
    b = await open_shared_state(redis_url, key_prefix=redis_prefix)
    try:
        await _revocation_across_services(db, a, b)
    finally:
        await a.close()
        await b.close()


async def test_without_run_a_revocation_elsewhere_lapses_with_the_cache(
    db: Database, shared: SharedState, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node that missed the broadcast still stops accepting the key after POSITIVE_TTL."""
    import bastion.apikeys.service as service_module

    writer = ApiKeyService(db, Settings(), shared)
    reader = ApiKeyService(db, Settings(), shared)
    record, key = await writer.create(ApiKeySpec(name="a"))
    monkeypatch.setattr(service_module, "POSITIVE_TTL", 0.05)
    await reader.verify(key)
    await writer.revoke(record.id)
    await asyncio.sleep(0.1)
    assert await reason_of(reader.verify(key)) == "revoked"


# -- secrets stay secret ------------------------------------------------------------------------


async def test_no_full_key_in_logs_errors_or_reprs(
    service: ApiKeyService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    record, key = await service.create(
        ApiKeySpec(name="a", ip_allow=["10.0.0.0/8"], expires_at=datetime.now(UTC) + timedelta(1))
    )
    seen: list[str] = [repr(record), str(record)]
    await service.verify(key, ip="10.0.0.1")
    for attempt in (
        service.verify(key, ip="192.0.2.1"),
        service.verify(key[:-1] + ("A" if key[-1] != "A" else "B")),
        service.verify(key, now=later(10**7)),
    ):
        with pytest.raises(Exception) as info:
            await attempt
        seen += [repr(info.value), str(info.value), repr(info.value.to_problem())]  # type: ignore[attr-defined]
    successor, new_key = await service.rotate(record.id)
    await service.verify(new_key, ip="10.0.0.1")
    await service.flush_last_used()
    await service.report_leaks([key, new_key], source="test")
    await service.disable(record.id)
    await service.delete(record.id)
    seen += [repr(successor), repr(api_key_view(successor))]
    seen += [entry.getMessage() for entry in caplog.records]
    assert caplog.records  # the lifecycle is logged …
    for text in seen:
        for secret in (key, new_key, key[10:], new_key[10:]):
            assert secret not in text  # … without the keys


# -- reads by id for exchanged tokens (get_cached) ------------------------------------------


async def test_get_cached_reads_once_and_follows_every_change(
    service: ApiKeyService, repo: CountingRepository
) -> None:
    record, _ = await service.create(ApiKeySpec(name="svc"))
    repo.calls.clear()
    assert (await service.get_cached(record.id)).id == record.id
    assert (await service.get_cached(record.id)).id == record.id
    assert repo.calls["get"] == 1  # no database read per token verification
    await service.disable(record.id)  # drops the entry (and publishes on "api-keys")
    assert (await service.get_cached(record.id)).disabled
    service.invalidate(record.id)  # what a message on the channel does
    await service.get_cached(record.id)
    service.invalidate(None)
    await service.get_cached(record.id)
    assert repo.calls["get"] == 4
    with pytest.raises(NotFoundError):
        await service.get_cached("no-such-key")


async def test_get_cached_does_not_keep_a_read_overtaken_by_an_invalidation(
    service: ApiKeyService, repo: CountingRepository
) -> None:
    record, _ = await service.create(ApiKeySpec(name="svc"))
    inner_get = repo.inner.get

    async def slow_get(key_id: str) -> ApiKey:
        found = await inner_get(key_id)
        service.invalidate(key_id)  # the key changed while this read was out
        return found  # type: ignore[no-any-return]

    repo.inner.get = slow_get
    await service.get_cached(record.id)
    repo.inner.get = inner_get
    repo.calls.clear()
    await service.get_cached(record.id)
    assert repo.calls["get"] == 1  # read again: the overtaken record was not kept
