"""UserOperations on SQLite and PostgreSQL: each change audited and on the change feed."""

from __future__ import annotations

from datetime import datetime

import pytest

from bastion.audit.events import Event
from bastion.credentials.lifecycle import ChangeRecorder, collect
from bastion.settings import Settings
from bastion.storage import ConflictError, Database, NotFoundError, feed
from bastion.users import (
    UserOperations,
    UserService,
    UserSpec,
    UserSpecError,
    WeakPasswordError,
)

PASSWORD = "violet staple orbit 42"


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def ops(db: Database, events: list[Event]) -> UserOperations:
    return UserOperations(
        UserService(db, Settings()), ChangeRecorder("cli:tester", collect(events))
    )


async def _feed(db: Database, after: int) -> list[tuple[str, str]]:
    return [(r.channel, r.message) for r in await db.change_feed.read_after(after, limit=100)]


def _actions(events: list[Event]) -> list[tuple[str, str, str, list[str]]]:
    return [
        (e.type, e.data["action"], e.data["target"], e.data["fields"])
        for e in events
        if e.subject == "cli:tester"
    ]


async def test_create_with_password(ops: UserOperations, db: Database, events: list[Event]) -> None:
    head = await db.change_feed.head()
    doc = await ops.create(
        UserSpec("Alice", email="alice@example.com", roles=("admin", "admin", "ops")), PASSWORD
    )
    assert doc["username"] == "Alice"
    assert doc["roles"] == ["admin", "ops"]
    assert doc["has_password"] is True
    assert doc["disabled"] is False
    assert doc["password_changed_at"] == doc["created_at"]
    assert "password_hash" not in doc and PASSWORD not in repr(doc)
    stored = await db.users.get(doc["id"])
    assert stored.password_hash is not None and stored.password_hash.startswith("$argon2id$")
    assert _actions(events) == [
        ("user.changed", "created", doc["id"], ["email", "password", "roles", "username"])
    ]
    assert await _feed(db, head) == [(feed.USERS, doc["id"])]


async def test_create_without_password(ops: UserOperations) -> None:
    doc = await ops.create(UserSpec("bob"))
    assert (doc["has_password"], doc["password_changed_at"]) == (False, None)


async def test_a_refused_password_stores_nothing(
    ops: UserOperations, db: Database, events: list[Event]
) -> None:
    head = await db.change_feed.head()
    with pytest.raises(WeakPasswordError) as info:
        await ops.create(UserSpec("carol"), "1QAZ2WSX3EDC")
    assert info.value.rule == "common"
    assert await db.users.find_by_username("carol") is None
    assert events == [] and await _feed(db, head) == []


async def test_usernames_unique_case_insensitively(ops: UserOperations) -> None:
    await ops.create(UserSpec("Dave"))
    with pytest.raises(ConflictError) as info:
        await ops.create(UserSpec("DAVE"))
    assert info.value.detail == "user 'DAVE' already exists"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (UserSpec(""), "username"),
        (UserSpec("has space"), "username"),
        (UserSpec("x" * 256), "username"),
        (UserSpec("\ufb03" * 100), "username"),  # 100 characters, 300 once NFKC-folded
        (UserSpec("ok", email="not-an-address"), "email"),
        (UserSpec("ok", roles=("bad role",)), "roles"),
        (UserSpec("ok", display_name="bell\x07"), "display_name"),
    ],
)
async def test_bad_metadata_names_the_field(
    ops: UserOperations, spec: UserSpec, field: str
) -> None:
    with pytest.raises(UserSpecError) as info:
        await ops.create(spec)
    assert (info.value.code, info.value.field) == ("invalid_user_metadata", field)
    assert info.value.detail.startswith(f"{field}: ")


async def test_disable_enable_reset_delete(
    ops: UserOperations, db: Database, events: list[Event]
) -> None:
    user_id = (await ops.create(UserSpec("erin"), PASSWORD))["id"]
    before = await db.users.get(user_id)
    head = await db.change_feed.head()
    events.clear()

    assert (await ops.change_state("disable", user_id))["disabled"] is True
    assert (await ops.change_state("enable", user_id))["disabled"] is False
    reset = await ops.reset_password(user_id, "a completely new passphrase")
    after = await db.users.get(user_id)
    assert after.password_hash != before.password_hash
    assert before.password_changed_at is not None
    assert datetime.fromisoformat(reset["password_changed_at"]) > before.password_changed_at
    await ops.delete(user_id)
    with pytest.raises(NotFoundError):
        await ops.show(user_id)

    assert _actions(events) == [
        ("user.changed", "disabled", user_id, ["disabled"]),
        ("user.changed", "enabled", user_id, ["disabled"]),
        ("user.changed", "password_reset", user_id, ["password"]),
        ("user.changed", "deleted", user_id, []),
    ]
    assert await _feed(db, head) == [(feed.USERS, user_id)] * 4


async def test_reset_password_is_checked_by_the_policy(ops: UserOperations) -> None:
    user_id = (await ops.create(UserSpec("frank")))["id"]
    with pytest.raises(WeakPasswordError) as info:
        await ops.reset_password(user_id, "short")
    assert info.value.rule == "too_short"
    with pytest.raises(WeakPasswordError) as info:
        await ops.reset_password(user_id, "Frank")
    assert info.value.rule == "too_short"


async def test_unknown_user_is_not_found(ops: UserOperations, events: list[Event]) -> None:
    for call in (
        ops.change_state("disable", "nobody"),
        ops.reset_password("nobody", PASSWORD),
        ops.delete("nobody"),
        ops.show("nobody"),
    ):
        with pytest.raises(NotFoundError):
            await call
    assert events == []


async def test_resolve_by_id_or_username(ops: UserOperations) -> None:
    user_id = (await ops.create(UserSpec("Grace")))["id"]
    assert await ops.resolve(user_id) == user_id
    assert await ops.resolve("grace") == user_id
    with pytest.raises(NotFoundError) as info:
        await ops.resolve("heidi")
    assert info.value.detail == "user 'heidi' does not exist"


async def test_list_pages(ops: UserOperations) -> None:
    for name in ("u1", "u2", "u3"):
        await ops.create(UserSpec(name))
    first = await ops.list(limit=2)
    assert [u["username"] for u in first["items"]] == ["u1", "u2"]
    rest = await ops.list(limit=2, cursor=first["next_cursor"])
    assert [u["username"] for u in rest["items"]] == ["u3"]
    assert rest["next_cursor"] is None


async def test_disabling_or_deleting_a_user_revokes_their_refresh_token_families(
    db: Database, ops: UserOperations
) -> None:
    from bastion.oauth.refresh_tokens import RefreshTokenService
    from bastion.storage import Client

    client = await db.clients.create(
        Client(client_id="app", grant_types=("authorization_code", "refresh_token"))
    )
    tokens = RefreshTokenService(db.refresh_tokens, Settings().tokens)
    alice = await ops.create(UserSpec("alice"))
    bob = await ops.create(UserSpec("bob"))
    issued = [await tokens.issue_family(client, alice["id"], "") for _ in range(2)]
    kept = await tokens.issue_family(client, bob["id"], "")
    head = await db.change_feed.head()
    await ops.change_state("disable", alice["id"])
    for family in issued:
        record = await db.refresh_tokens.get(family.record.id)
        assert record.revoked_at is not None
    assert (await db.refresh_tokens.get(kept.record.id)).revoked_at is None
    revoked = [m for c, m in await _feed(db, head) if c == feed.REVOKED_TOKENS]
    assert sorted(m.split()[0] for m in revoked) == sorted(f.access_jti for f in issued)
    # Deleting deny-lists the access tokens first: the rows go with the user.
    head = await db.change_feed.head()
    await ops.delete(bob["id"])
    revoked = [m for c, m in await _feed(db, head) if c == feed.REVOKED_TOKENS]
    assert [m.split()[0] for m in revoked] == [kept.access_jti]
