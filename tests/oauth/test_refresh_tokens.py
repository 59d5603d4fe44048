"""RefreshTokenService on SQLite and PostgreSQL: rotation, reuse, lifetimes, clients, scopes.

The clock is the test's: lifetimes of a minute or two are crossed by moving it, not by
sleeping. Concurrency is real: coroutines on several connections race for one token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bastion.crypto.digests import sha256_hex
from bastion.oauth.refresh_tokens import (
    REFRESH_TOKEN_PREFIX,
    IssuedRefreshToken,
    RefreshTokenService,
)
from bastion.protocol.rfc6749.errors import InvalidGrantError, InvalidScopeError
from bastion.protocol.rfc6749.grants.refresh_token import RefreshRequest, Rotation
from bastion.storage import Client, Database, RefreshToken, User, feed

T0 = 1_800_000_000.0


@dataclass
class Lifetimes:
    refresh_token_ttl: float = 3600.0
    refresh_token_idle_ttl: float = 600.0
    max_access_token_ttl: float = 900.0
    leeway: float = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorded:
    denied: list[str]
    thefts: list[tuple[str, str, str | None]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorded() -> Recorded:
    return Recorded([], [])


@pytest.fixture
async def user(db: Database) -> User:
    return await db.users.create(User(username="alice"))


def _client(client_id: str) -> Client:
    return Client(
        client_id=client_id,
        grant_types=("authorization_code", "refresh_token"),
        redirect_uris=("https://app.example.com/cb",),
    )


@pytest.fixture
async def app(db: Database) -> Client:
    return await db.clients.create(_client("app"))


@pytest.fixture
async def other(db: Database) -> Client:
    return await db.clients.create(_client("other"))


def _service(
    db: Database, clock: Clock, recorded: Recorded, lifetimes: Lifetimes | None = None
) -> RefreshTokenService:
    async def user_is_active(user_id: str) -> bool:
        return not (await db.users.get(user_id)).disabled

    async def deny(message: str) -> None:
        recorded.denied.append(message)

    def theft(token: RefreshToken, reason: str, ip: str | None) -> None:
        recorded.thefts.append((token.family_id, reason, ip))

    return RefreshTokenService(
        db.refresh_tokens,
        lifetimes or Lifetimes(),
        user_is_active=user_is_active,
        deny_locally=deny,
        on_theft=theft,
        clock=clock,
    )


@pytest.fixture
def service(db: Database, clock: Clock, recorded: Recorded) -> RefreshTokenService:
    return _service(db, clock, recorded)


async def _refused(
    service: RefreshTokenService, token: str, client: Client, reason: str, ip: str | None = None
) -> None:
    with pytest.raises(InvalidGrantError) as caught:
        await service.rotate(RefreshRequest(token, client, client_ip=ip))
    assert (caught.value.code, caught.value.reason) == ("invalid_grant", reason)


async def _revoked_messages(db: Database) -> list[str]:
    rows = await db.change_feed.read_after(0, limit=1000)
    return [r.message for r in rows if r.channel == feed.REVOKED_TOKENS]


async def test_a_family_rotates_and_only_digests_are_stored(
    db: Database, service: RefreshTokenService, app: Client, user: User, clock: Clock
) -> None:
    first = await service.issue_family(app, user.id, "openid profile")
    assert first.token.startswith(REFRESH_TOKEN_PREFIX)
    assert len(first.token) == len(REFRESH_TOKEN_PREFIX) + 43  # 256 random bits
    assert first.record.token_digest == sha256_hex(first.token.encode())
    assert first.access_jti == first.record.id
    assert first.record.expires_at is not None
    assert first.record.expires_at.timestamp() == T0 + 3600
    token, seen = first.token, {first.token}
    for step in range(1, 4):
        clock.now = T0 + 60 * step
        rotation = await service.rotate(RefreshRequest(token, app, client_ip="192.0.2.1"))
        assert rotation.subject == user.id
        assert rotation.scope == ("openid", "profile")
        assert rotation.issued_at == clock.now
        assert rotation.refresh_token not in seen
        seen.add(rotation.refresh_token)
        token = rotation.refresh_token
    family = await db.refresh_tokens.list_family(first.record.family_id)
    assert len(family) == 4
    assert [t.parent_id for t in family] == [None, *(t.id for t in family[:-1])]
    assert all(t.scope == "openid profile" for t in family)
    assert {t.expires_at for t in family} == {first.record.expires_at}  # absolute end kept
    assert [t.rotated_at is None for t in family] == [False, False, False, True]
    assert rotation.jti == family[-1].id
    stored = repr(family)
    assert not any(secret in stored for secret in seen)


async def test_reusing_a_rotated_token_revokes_the_family_and_its_access_tokens(
    db: Database,
    service: RefreshTokenService,
    app: Client,
    user: User,
    clock: Clock,
    recorded: Recorded,
) -> None:
    first = await service.issue_family(app, user.id, "openid")
    clock.now = T0 + 10
    second = await service.rotate(RefreshRequest(first.token, app))
    clock.now = T0 + 20
    await _refused(service, first.token, app, "refresh_token_reuse", ip="203.0.113.9")
    # The legitimate holder's newer token is dead too.
    await _refused(service, second.refresh_token, app, "refresh_token_revoked")
    family = await db.refresh_tokens.list_family(first.record.family_id)
    assert all(t.revoked_at is not None for t in family)
    expected = [f"{first.access_jti} {int(T0 + 900)}", f"{second.jti} {int(T0 + 10 + 900)}"]
    assert await _revoked_messages(db) == expected
    assert recorded.denied == expected
    assert recorded.thefts == [(first.record.family_id, "refresh_token_reuse", "203.0.113.9")]


async def test_access_tokens_past_their_lifetime_are_not_announced(
    db: Database, service: RefreshTokenService, app: Client, user: User, clock: Clock
) -> None:
    first = await service.issue_family(app, user.id, "")
    clock.now = T0 + 300
    second = await service.rotate(RefreshRequest(first.token, app))
    clock.now = T0 + 900 + 30 + 1  # the first access token is dead even with leeway
    assert await service.revoke_family(first.record.family_id) == 2
    assert await _revoked_messages(db) == [f"{second.jti} {int(T0 + 300 + 900)}"]


async def test_idle_tokens_expire_and_use_keeps_a_family_alive(
    db: Database, app: Client, user: User, clock: Clock, recorded: Recorded
) -> None:
    service = _service(db, clock, recorded, Lifetimes(refresh_token_idle_ttl=60))
    issued = await service.issue_family(app, user.id, "")
    token = issued.token
    for step in range(1, 4):  # 150 s in all, each use within 60 s of the last
        clock.now = T0 + 50 * step
        token = (await service.rotate(RefreshRequest(token, app))).refresh_token
    clock.now = T0 + 150 + 60
    await _refused(service, token, app, "refresh_token_idle")
    assert recorded.thefts == []


async def test_a_family_ends_at_its_absolute_lifetime_whatever_its_use(
    db: Database, app: Client, user: User, clock: Clock, recorded: Recorded
) -> None:
    lifetimes = Lifetimes(refresh_token_ttl=120, refresh_token_idle_ttl=60)
    service = _service(db, clock, recorded, lifetimes)
    token = (await service.issue_family(app, user.id, "")).token
    clock.now = T0 + 50
    token = (await service.rotate(RefreshRequest(token, app))).refresh_token
    clock.now = T0 + 100
    token = (await service.rotate(RefreshRequest(token, app))).refresh_token
    clock.now = T0 + 120
    await _refused(service, token, app, "refresh_token_expired")


async def test_another_client_presenting_a_token_revokes_its_family(
    service: RefreshTokenService, app: Client, other: Client, user: User, recorded: Recorded
) -> None:
    issued = await service.issue_family(app, user.id, "")
    with pytest.raises(InvalidGrantError) as caught:
        await service.rotate(RefreshRequest(issued.token, other))
    assert caught.value.reason == "foreign_refresh_token"
    assert caught.value.error_description == "the refresh token was not issued to this client"
    await _refused(service, issued.token, app, "refresh_token_revoked")
    assert recorded.thefts == [(issued.record.family_id, "foreign_refresh_token", None)]


async def test_scope_may_narrow_but_never_widen(
    db: Database, service: RefreshTokenService, app: Client, user: User
) -> None:
    issued = await service.issue_family(app, user.id, "read write admin")
    with pytest.raises(InvalidScopeError) as caught:
        await service.rotate(RefreshRequest(issued.token, app, ("read", "delete")))
    assert caught.value.error_description == "scope 'delete' is not allowed for this client"
    # A refused widening does not use the token up.
    narrowed = await service.rotate(RefreshRequest(issued.token, app, ("read",)))
    assert narrowed.scope == ("read",)
    successor = await db.refresh_tokens.get(narrowed.jti)
    assert successor.scope == "read write admin"  # RFC 6749 §6: identical to the presented one
    again = await service.rotate(RefreshRequest(narrowed.refresh_token, app))
    assert again.scope == ("read", "write", "admin")


async def test_unknown_and_malformed_tokens_are_invalid_grant(
    service: RefreshTokenService, app: Client
) -> None:
    for token in ("brt_" + "A" * 43, "not-a-refresh-token", "brt_" + "x" * 500):
        await _refused(service, token, app, "unknown_refresh_token")


async def test_a_disabled_users_tokens_are_refused_and_revoked(
    db: Database, service: RefreshTokenService, app: Client, user: User
) -> None:
    issued = await service.issue_family(app, user.id, "")
    await db.users.update(user.id, disabled=True)
    await _refused(service, issued.token, app, "user_inactive")
    await db.users.update(user.id, disabled=False)
    await _refused(service, issued.token, app, "refresh_token_revoked")


async def test_simultaneous_uses_of_one_token_exactly_one_wins(
    db: Database, service: RefreshTokenService, app: Client, user: User
) -> None:
    issued = await service.issue_family(app, user.id, "")

    async def use() -> Rotation | InvalidGrantError:
        try:
            return await service.rotate(RefreshRequest(issued.token, app))
        except InvalidGrantError as error:
            return error

    outcomes = await asyncio.gather(*(use() for _ in range(8)))
    wins = [o for o in outcomes if isinstance(o, Rotation)]
    assert len(wins) == 1
    losses = [o for o in outcomes if isinstance(o, InvalidGrantError)]
    assert len(losses) == 7
    assert {loss.reason for loss in losses} <= {"refresh_token_reuse", "refresh_token_revoked"}
    family = await db.refresh_tokens.list_family(issued.record.family_id)
    assert len(family) == 2  # one successor stored, whatever the losers did


async def test_revoking_a_token_ends_its_family_for_its_own_client_only(
    db: Database, service: RefreshTokenService, app: Client, other: Client, user: User
) -> None:
    issued = await service.issue_family(app, user.id, "")
    assert await service.revoke("brt_unknown", app) is None
    with pytest.raises(InvalidGrantError) as caught:
        await service.revoke(issued.token, other)
    assert caught.value.reason == "foreign_token"
    second = await service.issue_family(app, user.id, "")
    record = await service.revoke(second.token, app)
    assert record is not None
    assert record.family_id == second.record.family_id
    await _refused(service, second.token, app, "refresh_token_revoked")
    assert f"{second.access_jti} {int(T0 + 900)}" in await _revoked_messages(db)


async def test_issue_family_takes_a_name_and_revoke_user_ends_every_family(
    db: Database, service: RefreshTokenService, app: Client, user: User
) -> None:
    named: IssuedRefreshToken = await service.issue_family(app, user.id, "", family_id="f" * 32)
    assert named.record.family_id == "f" * 32
    other = await service.issue_family(app, user.id, "")
    assert await service.revoke_user(user.id) == 2
    for token in (named.token, other.token):
        await _refused(service, token, app, "refresh_token_revoked")


async def test_ending_families_names_exactly_one_family_or_user(db: Database) -> None:
    now = datetime.fromtimestamp(T0, UTC)
    with pytest.raises(ValueError, match="exactly one of family_id and user_id"):
        await db.refresh_tokens.end_families(now)
    with pytest.raises(ValueError, match="exactly one of family_id and user_id"):
        await db.refresh_tokens.end_families(now, family_id="f", user_id="u")
    assert await db.refresh_tokens.end_families(now, family_id="none-such") == ()
