"""Contract: every write of a user leaves one ``users`` feed row, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bastion.storage import ConflictError, Database, NotFoundError, User, UserCredential, feed


async def _rows(db: Database, after: int) -> list[tuple[str, str]]:
    return [(r.channel, r.message) for r in await db.change_feed.read_after(after, limit=100)]


async def test_create_update_delete_each_announce_the_user(db: Database, now: datetime) -> None:
    head = await db.change_feed.head()
    user = await db.users.create(User(username="zoe", created_at=now, updated_at=now))
    await db.users.update(user.id, disabled=True)
    await db.users.add_credential(UserCredential(user_id=user.id, kind="totp"))  # not a user row
    await db.users.delete(user.id)
    assert await _rows(db, head) == [(feed.USERS, user.id)] * 3


async def test_a_failed_write_announces_nothing(db: Database, user: User) -> None:
    head = await db.change_feed.head()
    with pytest.raises(ConflictError):
        await db.users.create(User(username="ALICE"))
    with pytest.raises(NotFoundError):
        await db.users.update("nobody", disabled=True)
    with pytest.raises(NotFoundError):
        await db.users.delete("nobody")
    assert await db.change_feed.head() == head


async def test_password_changed_at_round_trips(db: Database, user: User, now: datetime) -> None:
    assert user.password_changed_at is None
    later = now + timedelta(hours=1)
    updated = await db.users.update(user.id, password_hash="$argon2id$x", password_changed_at=later)
    assert updated.password_changed_at == later
    assert (await db.users.get(user.id)).password_changed_at == later
