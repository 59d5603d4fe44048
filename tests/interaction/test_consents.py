"""Consents on SQLite and PostgreSQL: one row per (user, client, scope set), covering sets,
the time moved forward when allowed again, revocation with the client's refresh tokens,
cascades with the user and the client, and the audit events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bastion.audit.events import Auditor, Event
from bastion.interaction.consents import ConsentService, canonical_scope, describe
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.settings import Settings
from bastion.storage import Client, Database, NotFoundError, User

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def refresh(db: Database) -> RefreshTokenService:
    return RefreshTokenService(db.refresh_tokens, Settings().tokens)


@pytest.fixture
def consents(db: Database, refresh: RefreshTokenService, events: list[Event]) -> ConsentService:
    auditor = Auditor()
    auditor.subscribe(events.append)
    return ConsentService(db, refresh, auditor)


@pytest.fixture
async def alice(db: Database) -> User:
    return await db.users.create(User(username="alice"))


@pytest.fixture
async def spa(db: Database) -> Client:
    client = Client("spa", grant_types=("authorization_code", "refresh_token"))
    await db.clients.create(client)
    await db.clients.create(Client("other", grant_types=("authorization_code",)))
    return client


def test_the_scope_set_has_one_spelling() -> None:
    assert canonical_scope(["profile", "openid", "profile"]) == "openid profile"
    assert describe("offline_access").startswith("Keep access")
    assert describe("orders:read") == "Use the API permission “orders:read”"


async def test_a_consent_covers_its_scope_set_and_subsets(
    consents: ConsentService, alice: User, spa: Client, events: list[Event]
) -> None:
    assert await consents.consented_at(alice.id, "spa", ["openid"]) is None
    await consents.give(alice.id, "spa", ["profile", "openid"], at=T0)
    assert await consents.consented_at(alice.id, "spa", ["openid"]) == T0.timestamp()
    assert await consents.consented_at(alice.id, "spa", ["openid", "profile"]) == T0.timestamp()
    assert await consents.consented_at(alice.id, "spa", ["openid", "email"]) is None
    assert await consents.consented_at(alice.id, "other", ["openid"]) is None
    # Allowed again later: one row, its time moved forward.
    later = T0 + timedelta(minutes=5)
    await consents.give(alice.id, "spa", ["openid", "profile"], at=later)
    listed = await consents.list_for_user(alice.id)
    assert [(c.client_id, c.scope, c.created_at) for c in listed] == [
        ("spa", "openid profile", later)
    ]
    # A second set beside it.
    await consents.give(alice.id, "spa", ["openid"], at=T0)
    assert await consents.consented_at(alice.id, "spa", ["openid"]) == later.timestamp()
    assert len(await consents.list_for_user(alice.id)) == 2
    assert [(e.type, e.subject, e.client_id, e.data["scope"]) for e in events] == [
        ("consent.given", alice.id, "spa", "openid profile"),
        ("consent.given", alice.id, "spa", "openid profile"),
        ("consent.given", alice.id, "spa", "openid"),
    ]


async def test_a_consent_needs_a_user_and_a_client(consents: ConsentService, alice: User) -> None:
    with pytest.raises(NotFoundError):
        await consents.give(alice.id, "nobody", ["openid"])
    with pytest.raises(NotFoundError):
        await consents.give("no-user", "nobody", ["openid"])


async def test_revoking_ends_every_set_and_the_clients_refresh_tokens(
    db: Database,
    consents: ConsentService,
    refresh: RefreshTokenService,
    alice: User,
    spa: Client,
    events: list[Event],
) -> None:
    bob = await db.users.create(User(username="bob"))
    other = await db.clients.get("other")
    await consents.give(alice.id, "spa", ["openid"])
    await consents.give(alice.id, "spa", ["openid", "email"])
    await consents.give(alice.id, "other", ["openid"])
    await consents.give(bob.id, "spa", ["openid"])
    mine = await refresh.issue_family(spa, alice.id, "openid")
    elsewhere = await refresh.issue_family(other, alice.id, "openid")
    bobs = await refresh.issue_family(spa, bob.id, "openid")
    events.clear()

    revoked = await consents.revoke(alice.id, "spa")
    assert [c.scope for c in revoked.consents] == ["email openid", "openid"]
    assert revoked.refresh_tokens == 1
    assert (await db.refresh_tokens.get(mine.record.id)).revoked_at is not None
    assert (await db.refresh_tokens.get(elsewhere.record.id)).revoked_at is None
    assert (await db.refresh_tokens.get(bobs.record.id)).revoked_at is None
    assert [(c.client_id, c.scope) for c in await consents.list_for_user(alice.id)] == [
        ("other", "openid")
    ]
    assert len(await consents.list_for_user(bob.id)) == 1
    assert events == []  # the door that revoked it audits it (with who did it)
    # Nothing left to revoke: nothing happens.
    again = await consents.revoke(alice.id, "spa")
    assert (again.consents, again.refresh_tokens) == ((), 0)


async def test_consents_go_with_their_user_and_client(
    db: Database, consents: ConsentService, alice: User, spa: Client
) -> None:
    await consents.give(alice.id, "spa", ["openid"])
    await consents.give(alice.id, "other", ["openid"])
    await db.clients.delete("other")
    assert [c.client_id for c in await consents.list_for_user(alice.id)] == ["spa"]
    await db.users.delete(alice.id)
    assert await consents.list_for_user(alice.id) == ()
