"""Contract: OAuth clients, client secrets and grants, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bastion.storage import (
    Client,
    ClientSecret,
    ConflictError,
    Database,
    Grant,
    NotFoundError,
    User,
)


async def test_client_round_trips_lists_and_json(db: Database, now: datetime) -> None:
    client = Client(
        client_id="svc",
        name="Service",
        client_type="confidential",
        token_endpoint_auth_method="private_key_jwt",
        redirect_uris=(),
        grant_types=("client_credentials",),
        response_types=(),
        scopes=("orders:read", "orders:write"),
        audiences=("https://api.example.com",),
        access_token_ttl=300,
        jwks={"keys": [{"kty": "EC", "crv": "P-256", "x": "f83O", "y": "x_FE", "kid": "k1"}]},
        metadata={"owner": "team-a", "nested": {"list": [1, 2, 3], "flag": True, "none": None}},
        created_at=now,
        updated_at=now,
    )
    await db.clients.create(client)
    assert await db.clients.get("svc") == client


async def test_client_without_jwks_stores_null(db: Database) -> None:
    client = await db.clients.create(Client(client_id="spa", client_type="public"))
    stored = await db.clients.get("spa")
    assert stored.jwks is None
    assert stored == client


async def test_duplicate_client_id_conflicts(db: Database, client: Client) -> None:
    with pytest.raises(ConflictError) as info:
        await db.clients.create(Client(client_id="app"))
    assert info.value.detail == "client 'app' already exists"


async def test_client_update_list_delete(db: Database, client: Client) -> None:
    updated = await db.clients.update("app", disabled=True, scopes=("openid",))
    assert updated.disabled is True
    assert updated.scopes == ("openid",)
    assert updated.redirect_uris == client.redirect_uris
    await db.clients.create(Client(client_id="b"))
    await db.clients.create(Client(client_id="c"))
    page = await db.clients.list(limit=2)
    assert [c.client_id for c in page.items] == ["app", "b"]
    rest = await db.clients.list(limit=2, cursor=page.next_cursor)
    assert [c.client_id for c in rest.items] == ["c"]
    assert rest.next_cursor is None
    await db.clients.delete("b")
    with pytest.raises(NotFoundError) as info:
        await db.clients.get("b")
    assert info.value.detail == "client 'b' does not exist"


async def test_client_secrets(db: Database, client: Client, now: datetime) -> None:
    first = ClientSecret(client_id="app", digest="a" * 64, prefix="bcs_ab12", created_at=now)
    second = ClientSecret(client_id="app", digest="b" * 64, prefix="bcs_cd34", created_at=now)
    await db.clients.add_secret(first)
    await db.clients.add_secret(second)
    assert await db.clients.find_secret("a" * 64) == first
    assert await db.clients.find_secret("c" * 64) is None
    assert await db.clients.list_secrets("app") == (first, second)

    grace_end = now + timedelta(days=1)
    rotated = await db.clients.set_secret_expiry(first.id, grace_end)
    assert rotated == replace(first, expires_at=grace_end)
    assert await db.clients.find_secret("a" * 64) == rotated

    await db.clients.delete_secret(first.id)
    assert await db.clients.list_secrets("app") == (second,)
    with pytest.raises(NotFoundError):
        await db.clients.delete_secret(first.id)


async def test_duplicate_secret_digest_conflicts(db: Database, client: Client) -> None:
    await db.clients.add_secret(ClientSecret(client_id="app", digest="d" * 64))
    with pytest.raises(ConflictError) as info:
        await db.clients.add_secret(ClientSecret(client_id="app", digest="d" * 64))
    assert info.value.detail == "a client secret with this digest already exists"


async def test_secret_of_unknown_client_is_not_found(db: Database) -> None:
    with pytest.raises(NotFoundError) as info:
        await db.clients.add_secret(ClientSecret(client_id="ghost", digest="e" * 64))
    assert info.value.detail == "client 'ghost' does not exist"


async def test_deleting_a_client_cascades_to_secrets(db: Database, client: Client) -> None:
    await db.clients.add_secret(ClientSecret(client_id="app", digest="f" * 64))
    await db.clients.delete("app")
    assert await db.clients.find_secret("f" * 64) is None


async def test_grants(db: Database, user: User, client: Client, now: datetime) -> None:
    grant = await db.grants.create(
        Grant(user_id=user.id, client_id="app", scopes=("openid",), created_at=now)
    )
    assert await db.grants.get(grant.id) == grant
    assert await db.grants.find_active(user.id, "app") == grant
    widened = await db.grants.update(grant.id, scopes=("openid", "profile"))
    assert widened.scopes == ("openid", "profile")

    revoked = await db.grants.revoke(grant.id, now)
    assert revoked.revoked_at == now
    # Idempotent: the first revocation time stays.
    again = await db.grants.revoke(grant.id, now + timedelta(hours=1))
    assert again.revoked_at == now
    assert await db.grants.find_active(user.id, "app") is None
    assert await db.grants.list_for_user(user.id) == (again,)

    await db.grants.delete(grant.id)
    with pytest.raises(NotFoundError) as info:
        await db.grants.get(grant.id)
    assert info.value.detail == f"grant {grant.id!r} does not exist"


async def test_grant_for_unknown_user_is_not_found(db: Database, client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        await db.grants.create(Grant(user_id="ghost", client_id="app"))
    assert info.value.detail == "user 'ghost' or client 'app' does not exist"


async def test_deleting_a_user_cascades_to_grants(db: Database, user: User, client: Client) -> None:
    grant = await db.grants.create(Grant(user_id=user.id, client_id="app"))
    await db.users.delete(user.id)
    with pytest.raises(NotFoundError):
        await db.grants.get(grant.id)
