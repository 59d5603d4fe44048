"""Contract: users and their credentials, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bastion.storage import (
    ConflictError,
    Database,
    InvalidCursorError,
    NotFoundError,
    User,
    UserCredential,
)


async def test_create_get_round_trips_every_member(db: Database, now: datetime) -> None:
    user = User(
        username="Bob",
        email="bob@example.com",
        email_verified=True,
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        display_name="Bob B.",
        roles=("admin", "auditor"),
        created_at=now,
        updated_at=now,
    )
    assert await db.users.create(user) == user
    stored = await db.users.get(user.id)
    assert stored == user
    assert stored.roles == ("admin", "auditor")
    assert stored.created_at.tzinfo is UTC


async def test_get_missing_raises_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError) as info:
        await db.users.get("nope")
    assert info.value.code == "not_found"
    assert info.value.detail == "user 'nope' does not exist"


async def test_usernames_are_unique_case_insensitively(db: Database, user: User) -> None:
    with pytest.raises(ConflictError) as info:
        await db.users.create(User(username="ALICE"))
    assert info.value.code == "conflict"
    assert info.value.detail == "user 'ALICE' already exists"
    # Full-width letters are the same name after NFKC.
    with pytest.raises(ConflictError):
        await db.users.create(User(username="\uff41\uff4c\uff49\uff43\uff45"))


async def test_duplicate_id_is_a_conflict(db: Database, user: User) -> None:
    with pytest.raises(ConflictError):
        await db.users.create(User(username="someone-else", id=user.id))


async def test_find_by_username_ignores_case(db: Database, user: User) -> None:
    assert await db.users.find_by_username("ALICE") == user
    assert await db.users.find_by_username("Alice") == user
    assert await db.users.find_by_username("mallory") is None


async def test_update_changes_only_named_members(db: Database, user: User) -> None:
    updated = await db.users.update(user.id, display_name="Alice A.", roles=("ops",))
    assert updated.display_name == "Alice A."
    assert updated.roles == ("ops",)
    assert updated.email == user.email
    assert updated.created_at == user.created_at
    assert updated.updated_at > user.updated_at
    assert await db.users.get(user.id) == updated


async def test_update_username_keeps_case_insensitive_uniqueness(db: Database, user: User) -> None:
    other = await db.users.create(User(username="carol"))
    with pytest.raises(ConflictError) as info:
        await db.users.update(other.id, username="Alice")
    assert info.value.detail == "user 'Alice' already exists"
    renamed = await db.users.update(other.id, username="Caroline")
    assert await db.users.find_by_username("caroline") == renamed


async def test_update_refuses_unknown_and_immutable_members(db: Database, user: User) -> None:
    with pytest.raises(TypeError, match="cannot update nickname"):
        await db.users.update(user.id, nickname="x")
    with pytest.raises(TypeError, match="cannot update id"):
        await db.users.update(user.id, id="other")
    with pytest.raises(TypeError, match="cannot update created_at"):
        await db.users.update(user.id, created_at=datetime.now(UTC))


async def test_update_missing_raises_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError):
        await db.users.update("missing", display_name="x")


async def test_delete(db: Database, user: User) -> None:
    await db.users.delete(user.id)
    with pytest.raises(NotFoundError):
        await db.users.get(user.id)
    with pytest.raises(NotFoundError):
        await db.users.delete(user.id)


async def test_list_is_keyset_paginated_in_creation_order(db: Database) -> None:
    created = [await db.users.create(User(username=f"user{i}")) for i in range(5)]
    page1 = await db.users.list(limit=2)
    assert [u.username for u in page1.items] == ["user0", "user1"]
    assert page1.next_cursor is not None
    page2 = await db.users.list(limit=2, cursor=page1.next_cursor)
    assert [u.username for u in page2.items] == ["user2", "user3"]
    page3 = await db.users.list(limit=2, cursor=page2.next_cursor)
    assert [u.username for u in page3.items] == ["user4"]
    assert page3.next_cursor is None
    everything = await db.users.list(limit=10)
    assert everything.items == tuple(created)
    assert everything.next_cursor is None


async def test_list_limit_must_be_positive(db: Database) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await db.users.list(limit=0)


async def test_timezones_round_trip_as_utc(db: Database) -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    moment = datetime(2025, 6, 1, 18, 0, 0, 999999, tzinfo=ist)
    user = await db.users.create(User(username="tz", created_at=moment, updated_at=moment))
    stored = await db.users.get(user.id)
    assert stored.created_at == moment
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at == datetime(2025, 6, 1, 12, 30, 0, 999999, tzinfo=UTC)


async def test_naive_datetimes_are_refused(db: Database) -> None:
    naive = datetime(2025, 1, 1)
    with pytest.raises(ValueError, match="naive datetime"):
        await db.users.create(User(username="naive", created_at=naive))


async def test_credentials_crud(db: Database, user: User, now: datetime) -> None:
    totp = UserCredential(
        user_id=user.id, kind="totp", name="phone", secret_sealed="sealed:v1:abc", created_at=now
    )
    passkey = UserCredential(
        user_id=user.id,
        kind="webauthn",
        name="laptop",
        data={"credential_id": "q83vEjRWeJA", "public_key": "pQECAyYg", "sign_count": 0},
        created_at=now,
    )
    await db.users.add_credential(totp)
    await db.users.add_credential(passkey)
    assert await db.users.get_credential(passkey.id) == passkey
    assert await db.users.list_credentials(user.id) == (totp, passkey)
    assert await db.users.list_credentials(user.id, kind="webauthn") == (passkey,)

    used = now + timedelta(minutes=1)
    updated = await db.users.update_credential(
        passkey.id, data={**passkey.data, "sign_count": 7}, last_used_at=used
    )
    assert updated == replace(passkey, data={**passkey.data, "sign_count": 7}, last_used_at=used)

    await db.users.delete_credential(totp.id)
    assert await db.users.list_credentials(user.id) == (updated,)
    with pytest.raises(NotFoundError) as info:
        await db.users.get_credential(totp.id)
    assert info.value.detail == f"credential {totp.id!r} does not exist"


async def test_credential_of_unknown_user_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError) as info:
        await db.users.add_credential(UserCredential(user_id="ghost", kind="totp"))
    assert info.value.detail == "user 'ghost' does not exist"


async def test_deleting_a_user_cascades_to_credentials(db: Database, user: User) -> None:
    credential = await db.users.add_credential(UserCredential(user_id=user.id, kind="totp"))
    await db.users.delete(user.id)
    with pytest.raises(NotFoundError):
        await db.users.get_credential(credential.id)


async def test_foreign_cursor_is_an_invalid_cursor_for_audit(db: Database) -> None:
    with pytest.raises(InvalidCursorError) as info:
        await db.audit.search(cursor="not-a-number")
    assert info.value.code == "invalid_cursor"
