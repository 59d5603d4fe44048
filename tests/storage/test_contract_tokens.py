"""Contract: single-use authorization codes and refresh-token rotation, on SQLite and PostgreSQL.

Concurrency is real: many coroutines on several connections (and, on SQLite, two
Database objects on one file, as two processes would be) race for one code or token.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bastion.storage import (
    AuthorizationCode,
    Client,
    CodeReplayError,
    ConflictError,
    Database,
    Grant,
    NotFoundError,
    RefreshToken,
    RefreshTokenReuseError,
    RefreshTokenRevokedError,
    User,
)


def _code(user: User, now: datetime, digest: str = "c" * 64, **extra: object) -> AuthorizationCode:
    fields: dict[str, object] = {
        "code_digest": digest,
        "client_id": "app",
        "user_id": user.id,
        "redirect_uri": "https://app.example.com/cb",
        "expires_at": now + timedelta(seconds=60),
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "created_at": now,
    }
    fields.update(extra)
    return AuthorizationCode(**fields)  # type: ignore[arg-type]


async def test_code_round_trip(db: Database, user: User, client: Client, now: datetime) -> None:
    grant = await db.grants.create(Grant(user_id=user.id, client_id="app"))
    code = _code(
        user,
        now,
        grant_id=grant.id,
        scope="openid profile",
        nonce="n-0S6_WzA2Mj",
        auth_time=now - timedelta(minutes=5),
        acr="urn:bastion:acr:mfa",
        amr=("pwd", "otp"),
        claims={"userinfo": {"email": {"essential": True}}},
    )
    await db.codes.create(code)
    assert await db.codes.get(code.code_digest) == code


async def test_code_consume_once_then_replay(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    code = await db.codes.create(_code(user, now))
    used_at = now + timedelta(seconds=2)
    consumed = await db.codes.consume(code.code_digest, used_at)
    assert consumed == replace(code, consumed_at=used_at)
    with pytest.raises(CodeReplayError) as info:
        await db.codes.consume(code.code_digest, now + timedelta(seconds=3))
    assert info.value.code == "code_replay"
    assert info.value.detail == "the authorization code was already used"
    assert info.value.record == consumed


async def test_consume_unknown_code_is_not_found(db: Database, now: datetime) -> None:
    with pytest.raises(NotFoundError) as info:
        await db.codes.consume("0" * 64, now)
    assert info.value.detail == "the authorization code does not exist"


async def test_duplicate_code_conflicts(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    await db.codes.create(_code(user, now))
    with pytest.raises(ConflictError) as info:
        await db.codes.create(_code(user, now))
    assert info.value.detail == "an authorization code with this digest already exists"


async def test_code_for_unknown_client_is_not_found(
    db: Database, user: User, now: datetime
) -> None:
    with pytest.raises(NotFoundError) as info:
        await db.codes.create(_code(user, now))
    assert info.value.detail == f"client 'app', user {user.id!r} or grant None does not exist"


async def _second_handle(db: Database, db_url: str) -> Database:
    # A second Database on the same database: another node / process.
    return await Database.connect(db_url)


async def test_concurrent_consume_has_exactly_one_winner(
    db: Database, db_url: str, user: User, client: Client, now: datetime
) -> None:
    code = await db.codes.create(_code(user, now))
    other = await _second_handle(db, db_url)
    try:
        handles = [db, other] * 10
        results = await asyncio.gather(
            *(h.codes.consume(code.code_digest, now) for h in handles), return_exceptions=True
        )
    finally:
        await other.close()
    wins = [r for r in results if isinstance(r, AuthorizationCode)]
    replays = [r for r in results if isinstance(r, CodeReplayError)]
    assert len(wins) == 1, results
    assert len(replays) == 19, results


async def test_delete_expired_codes(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    await db.codes.create(_code(user, now, digest="1" * 64, expires_at=now - timedelta(seconds=1)))
    await db.codes.create(_code(user, now, digest="2" * 64, expires_at=now + timedelta(seconds=60)))
    assert await db.codes.delete_expired(now) == 1
    with pytest.raises(NotFoundError):
        await db.codes.get("1" * 64)
    await db.codes.get("2" * 64)


def _token(user: User, now: datetime, digest: str, family: str = "fam-1") -> RefreshToken:
    return RefreshToken(
        token_digest=digest,
        family_id=family,
        client_id="app",
        user_id=user.id,
        scope="openid offline_access",
        created_at=now,
        expires_at=now + timedelta(days=30),
    )


async def test_refresh_token_create_find_get(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    token = await db.refresh_tokens.create(_token(user, now, "r1"))
    assert await db.refresh_tokens.find_by_digest("r1") == token
    assert await db.refresh_tokens.find_by_digest("nope") is None
    assert await db.refresh_tokens.get(token.id) == token
    with pytest.raises(ConflictError) as info:
        await db.refresh_tokens.create(_token(user, now, "r1"))
    assert info.value.detail == "a refresh token with this id or digest already exists"


async def test_rotate_then_reuse_is_detected(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    first = await db.refresh_tokens.create(_token(user, now, "r1"))
    later = now + timedelta(minutes=5)
    # The caller's family/parent are overridden by the old token's.
    old = await db.refresh_tokens.rotate("r1", _token(user, later, "r2", family="wrong"), later)
    assert old == replace(first, rotated_at=later)
    second = await db.refresh_tokens.find_by_digest("r2")
    assert second is not None
    assert second.family_id == "fam-1"
    assert second.parent_id == first.id

    with pytest.raises(RefreshTokenReuseError) as info:
        await db.refresh_tokens.rotate("r1", _token(user, later, "r3"), later)
    assert info.value.code == "refresh_token_reuse"
    assert info.value.detail == "the refresh token was already rotated"
    assert info.value.record.family_id == "fam-1"
    assert await db.refresh_tokens.find_by_digest("r3") is None

    revoked = await db.refresh_tokens.revoke_family("fam-1", later)
    assert revoked == 2
    assert await db.refresh_tokens.revoke_family("fam-1", later) == 0
    family = await db.refresh_tokens.list_family("fam-1")
    assert [t.token_digest for t in family] == ["r1", "r2"]
    assert all(t.revoked_at == later for t in family)

    with pytest.raises(RefreshTokenRevokedError) as revoked_info:
        await db.refresh_tokens.rotate("r2", _token(user, later, "r4"), later)
    assert revoked_info.value.code == "refresh_token_revoked"
    with pytest.raises(NotFoundError) as missing:
        await db.refresh_tokens.rotate("zz", _token(user, later, "r5"), later)
    assert missing.value.detail == "the refresh token does not exist"


async def test_concurrent_rotation_has_exactly_one_winner(
    db: Database, db_url: str, user: User, client: Client, now: datetime
) -> None:
    await db.refresh_tokens.create(_token(user, now, "root"))
    other = await _second_handle(db, db_url)
    try:
        handles = [db, other] * 10
        results = await asyncio.gather(
            *(
                h.refresh_tokens.rotate("root", _token(user, now, f"next-{i}"), now)
                for i, h in enumerate(handles)
            ),
            return_exceptions=True,
        )
    finally:
        await other.close()
    wins = [r for r in results if isinstance(r, RefreshToken)]
    reuses = [r for r in results if isinstance(r, RefreshTokenReuseError)]
    assert len(wins) == 1, results
    assert len(reuses) == 19, results
    family = await db.refresh_tokens.list_family("fam-1")
    assert len(family) == 2  # the root and exactly one successor


async def test_revoke_one_token(db: Database, user: User, client: Client, now: datetime) -> None:
    token = await db.refresh_tokens.create(_token(user, now, "r1"))
    await db.refresh_tokens.revoke(token.id, now)
    await db.refresh_tokens.revoke(token.id, now + timedelta(seconds=1))
    assert (await db.refresh_tokens.get(token.id)).revoked_at == now
    with pytest.raises(NotFoundError):
        await db.refresh_tokens.revoke("missing", now)


async def test_delete_expired_tokens(
    db: Database, user: User, client: Client, now: datetime
) -> None:
    await db.refresh_tokens.create(
        replace(_token(user, now, "old"), expires_at=now - timedelta(seconds=1))
    )
    await db.refresh_tokens.create(_token(user, now, "fresh"))
    assert await db.refresh_tokens.delete_expired(now) == 1
    assert await db.refresh_tokens.find_by_digest("old") is None
    assert await db.refresh_tokens.find_by_digest("fresh") is not None
