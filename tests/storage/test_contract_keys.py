"""Contract: API keys, signing keys, webhooks and runtime settings, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bastion.storage import (
    ApiKey,
    ConflictError,
    Database,
    NotFoundError,
    SettingEntry,
    SigningKey,
    Webhook,
)


def _key(n: int, now: datetime, **extra: object) -> ApiKey:
    fields: dict[str, object] = {
        "digest": f"{n:064x}",
        "prefix": f"bk_live_{n:04d}",
        "name": f"key {n}",
        "created_at": now,
        "updated_at": now,
    }
    fields.update(extra)
    return ApiKey(**fields)  # type: ignore[arg-type]


async def test_api_key_round_trip_and_lookup_by_digest(db: Database, now: datetime) -> None:
    key = _key(
        1,
        now,
        owner_type="client",
        owner_id="svc",
        scopes=("orders:read",),
        routes=("orders",),
        expires_at=now + timedelta(days=90),
        rate_limits=({"per": "key", "rate": "100/minute"},),
        ip_allow=("10.0.0.0/8", "2001:db8::/32"),
        metadata={"ticket": "OPS-1"},
    )
    await db.api_keys.create(key)
    assert await db.api_keys.get(key.id) == key
    assert await db.api_keys.find_by_digest(key.digest) == key
    assert await db.api_keys.find_by_digest("0" * 64) is None


async def test_api_key_digest_is_unique(db: Database, now: datetime) -> None:
    await db.api_keys.create(_key(1, now))
    with pytest.raises(ConflictError) as info:
        await db.api_keys.create(_key(1, now))
    assert info.value.detail == "an API key with this id or digest already exists"


async def test_api_key_update_rotation_and_revocation(db: Database, now: datetime) -> None:
    old = await db.api_keys.create(_key(1, now))
    new = await db.api_keys.create(_key(2, now, rotated_from=old.id))
    grace = now + timedelta(hours=24)
    old_in_grace = await db.api_keys.update(old.id, grace_until=grace, updated_at=now)
    assert old_in_grace == replace(old, grace_until=grace)
    revoked = await db.api_keys.update(old.id, revoked_at=now, disabled=True)
    assert revoked.revoked_at == now
    assert revoked.disabled is True
    assert (await db.api_keys.get(new.id)).rotated_from == old.id


async def test_touch_last_used(db: Database, now: datetime) -> None:
    key = await db.api_keys.create(_key(1, now))
    used = now + timedelta(seconds=5)
    await db.api_keys.touch_last_used(key.id, used, "203.0.113.7")
    stored = await db.api_keys.get(key.id)
    assert stored.last_used_at == used
    assert stored.last_used_ip == "203.0.113.7"
    assert stored.updated_at == key.updated_at  # a use is not an edit
    await db.api_keys.touch_last_used("missing", used, None)  # ignored


async def test_api_key_list_by_owner_and_pages(db: Database, now: datetime) -> None:
    keys = [
        await db.api_keys.create(_key(i, now, owner_type="user", owner_id="u1" if i < 3 else "u2"))
        for i in range(5)
    ]
    mine = await db.api_keys.list(owner_type="user", owner_id="u1")
    assert mine.items == tuple(keys[:3])
    first = await db.api_keys.list(limit=3)
    second = await db.api_keys.list(limit=3, cursor=first.next_cursor)
    assert first.items + second.items == tuple(keys)
    assert second.next_cursor is None


async def test_api_key_delete(db: Database, now: datetime) -> None:
    key = await db.api_keys.create(_key(1, now))
    await db.api_keys.delete(key.id)
    with pytest.raises(NotFoundError) as info:
        await db.api_keys.get(key.id)
    assert info.value.detail == f"API key {key.id!r} does not exist"


def _signing_key(kid: str, now: datetime, state: str = "active") -> SigningKey:
    return SigningKey(
        kid=kid,
        alg="ES256",
        state=state,  # type: ignore[arg-type]
        public_jwk={"kty": "EC", "crv": "P-256", "x": "MKBC", "y": "4Etl", "kid": kid},
        private_key_sealed=f"sealed-private-{kid}",
        created_at=now,
        activates_at=now,
    )


async def test_signing_keys(db: Database, now: datetime) -> None:
    active = await db.signing_keys.create(_signing_key("k1", now))
    upcoming = await db.signing_keys.create(
        _signing_key("k2", now + timedelta(seconds=1), state="next")
    )
    assert await db.signing_keys.get("k1") == active
    assert await db.signing_keys.list() == (active, upcoming)
    assert await db.signing_keys.list(states=["next"]) == (upcoming,)
    with pytest.raises(ConflictError) as info:
        await db.signing_keys.create(_signing_key("k1", now))
    assert info.value.detail == "signing key 'k1' already exists"
    retiring = await db.signing_keys.update("k1", state="retiring", retires_at=now)
    assert retiring == replace(active, state="retiring", retires_at=now)
    await db.signing_keys.delete("k1")
    with pytest.raises(NotFoundError):
        await db.signing_keys.get("k1")


async def test_webhooks(db: Database, now: datetime) -> None:
    hook = await db.webhooks.create(
        Webhook(
            url="https://hooks.example.com/bastion",
            secret_sealed="sealed-hook-secret",
            name="alerts",
            events=("alert.brute_force", "alert.token_reuse"),
            created_at=now,
        )
    )
    off = await db.webhooks.create(
        Webhook(url="https://x.example.com", secret_sealed="s2", enabled=False)
    )
    assert await db.webhooks.get(hook.id) == hook
    assert await db.webhooks.list() == (hook, off)
    assert await db.webhooks.list(enabled_only=True) == (hook,)
    updated = await db.webhooks.update(hook.id, events=("*",))
    assert updated.events == ("*",)
    await db.webhooks.delete(off.id)
    assert await db.webhooks.list() == (updated,)
    with pytest.raises(NotFoundError):
        await db.webhooks.delete(off.id)


async def test_settings_upsert_and_json_values(db: Database, now: datetime) -> None:
    assert await db.settings.find("limits") is None
    with pytest.raises(NotFoundError) as info:
        await db.settings.get("limits")
    assert info.value.detail == "setting 'limits' does not exist"
    first = await db.settings.set("limits", {"login": {"rate": "5/minute"}}, now=now)
    assert await db.settings.get("limits") == first
    later = now + timedelta(minutes=1)
    second = await db.settings.set("limits", [1, "two", None, True], now=later)
    assert await db.settings.get("limits") == SettingEntry("limits", [1, "two", None, True], later)
    assert second.updated_at == later
    await db.settings.set("a.flag", False, now=now)
    await db.settings.set("z.none", None, now=now)
    listed = await db.settings.list()
    assert [(e.key, e.value) for e in listed] == [
        ("a.flag", False),
        ("limits", [1, "two", None, True]),
        ("z.none", None),
    ]
    await db.settings.delete("limits")
    assert await db.settings.find("limits") is None
    with pytest.raises(NotFoundError):
        await db.settings.delete("limits")
