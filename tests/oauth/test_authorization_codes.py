"""AuthorizationCodeService on SQLite and PostgreSQL: single use, concurrency, expiry, the
checks of a redemption (exact descriptions), and a replay revoking what the code issued.

The clock is the test's (expiry is crossed by moving it); concurrency is real: coroutines
on several connections race for one code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from bastion.crypto.digests import sha256_hex
from bastion.oauth.authorization_codes import (
    AUTHORIZATION_CODE_PREFIX,
    AuthorizationCodeService,
    family_id_of,
)
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.protocol.rfc6749.errors import InvalidGrantError
from bastion.protocol.rfc6749.grants.authorization_code import CodeRedemption, RedeemedCode
from bastion.protocol.rfc7636 import s256_challenge
from bastion.settings import Settings
from bastion.storage import AuthorizationCode, Client, Database, User, feed

T0 = 1_800_000_000.0
CALLBACK = "https://app.example.com/cb"
VERIFIER = "dBjftJeZ4CVP-mJ92K9-abcdefghijklmnopqrstuvwxyz_"  # 47 unreserved characters


@dataclass
class World:
    """The services under test, their clock, and what they told the outside."""

    db: Database
    codes: AuthorizationCodeService
    refresh: RefreshTokenService
    now: list[float] = field(default_factory=lambda: [T0])
    denied: list[str] = field(default_factory=list)
    replays: list[tuple[str, str | None]] = field(default_factory=list)


@pytest.fixture
async def world(db: Database) -> World:
    holder: list[World] = []

    def clock() -> float:
        return holder[0].now[0]

    async def deny(message: str) -> None:
        holder[0].denied.append(message)

    def replayed(code: AuthorizationCode, ip: str | None) -> None:
        holder[0].replays.append((code.code_digest, ip))

    tokens = Settings().tokens

    async def active(user_id: str) -> bool:
        return not (await db.users.get(user_id)).disabled

    refresh = RefreshTokenService(
        db.refresh_tokens, tokens, user_is_active=active, deny_locally=deny, clock=clock
    )
    codes = AuthorizationCodeService(db.codes, refresh, tokens, on_replay=replayed, clock=clock)
    holder.append(World(db, codes, refresh))
    for client_id in ("app", "other"):
        await db.clients.create(
            Client(
                client_id=client_id,
                grant_types=("authorization_code", "refresh_token"),
                redirect_uris=(CALLBACK, CALLBACK + "2"),
            )
        )
    await db.users.create(User(id="u1", username="alice"))
    return holder[0]


async def _issue(world: World, scope: str = "openid orders:read") -> str:
    client = await world.db.clients.get("app")
    return await world.codes.issue(
        client,
        "u1",
        redirect_uri=CALLBACK,
        scope=scope,
        code_challenge=s256_challenge(VERIFIER),
        nonce="n-1",
        auth_time=T0 - 20,
        acr="urn:bastion:acr:pwd",
        amr=("pwd",),
        session_id="sess-1",
    )


async def _redeem(
    world: World,
    code: str,
    *,
    client_id: str = "app",
    redirect_uri: str = CALLBACK,
    verifier: str = VERIFIER,
) -> RedeemedCode:
    client = await world.db.clients.get(client_id)
    redemption = CodeRedemption(code, client, redirect_uri, verifier, "192.0.2.9")
    return await world.codes.redeem(redemption)


async def _refused(world: World, code: str, reason: str, description: str, **kw: str) -> None:
    with pytest.raises(InvalidGrantError) as caught:
        await _redeem(world, code, **kw)
    error = caught.value
    assert (error.code, error.reason, error.error_description) == (
        "invalid_grant",
        reason,
        description,
    )


async def test_a_code_is_stored_as_a_digest_and_redeemed_once(world: World) -> None:
    code = await _issue(world)
    assert code.startswith(AUTHORIZATION_CODE_PREFIX)
    assert len(code) == len(AUTHORIZATION_CODE_PREFIX) + 43  # 256 random bits
    digest = sha256_hex(code.encode())
    stored = await world.db.codes.get(digest)
    assert stored.expires_at.timestamp() == T0 + 60  # tokens.authorization_code_ttl
    assert (stored.code_challenge_method, stored.claims) == ("S256", {"sid": "sess-1"})
    redeemed = await _redeem(world, code)
    assert redeemed == RedeemedCode(
        code_digest=digest,
        user_id="u1",
        scope="openid orders:read",
        family_id=family_id_of(digest),
        issued_at=T0,
        nonce="n-1",
        auth_time=T0 - 20,
        acr="urn:bastion:acr:pwd",
        amr=("pwd",),
        sid="sess-1",
    )
    await _refused(world, code, "code_reuse", "the authorization code is invalid")
    assert world.replays == [(digest, "192.0.2.9")]


async def test_unknown_and_malformed_codes(world: World) -> None:
    for code in ("bac_unknown", "brt_" + "x" * 43, "bac_" + "x" * 200):
        await _refused(world, code, "unknown_code", "the authorization code is invalid")
    assert world.replays == []


@pytest.mark.parametrize(
    ("changes", "reason", "description"),
    [
        (
            {"client_id": "other"},
            "foreign_code",
            "the authorization code was not issued to this client",
        ),
        (
            {"redirect_uri": CALLBACK + "2"},
            "redirect_uri_mismatch",
            "redirect_uri does not match the one of the authorization request",
        ),
        ({"verifier": VERIFIER[:-1] + "X"}, "pkce_mismatch", "PKCE verification failed"),
    ],
)
async def test_a_wrong_redemption_is_refused_and_burns_the_code(
    world: World, changes: dict[str, str], reason: str, description: str
) -> None:
    code = await _issue(world)
    await _refused(world, code, reason, description, **changes)
    # Consumed all the same: the right client can no longer use it.
    await _refused(world, code, "code_reuse", "the authorization code is invalid")


async def test_an_expired_code_is_refused(world: World) -> None:
    code = await _issue(world)
    world.now[0] = T0 + 60
    await _refused(world, code, "code_expired", "the authorization code has expired")
    fresh = await _issue(world)
    world.now[0] += 59
    assert (await _redeem(world, fresh)).user_id == "u1"


async def test_a_user_disabled_since_the_login_gets_nothing(world: World) -> None:
    code = await _issue(world)
    await world.db.users.update("u1", disabled=True)
    await _refused(world, code, "user_inactive", "the authorization code is invalid")


async def test_simultaneous_redemptions_exactly_one_wins(world: World) -> None:
    code = await _issue(world)

    async def attempt() -> RedeemedCode | InvalidGrantError:
        try:
            return await _redeem(world, code)
        except InvalidGrantError as error:
            return error

    outcomes = await asyncio.gather(*(attempt() for _ in range(8)))
    assert len([o for o in outcomes if isinstance(o, RedeemedCode)]) == 1
    assert {o.reason for o in outcomes if isinstance(o, InvalidGrantError)} == {"code_reuse"}
    assert len(world.replays) == 7


async def test_a_replay_revokes_the_family_and_its_access_tokens(world: World) -> None:
    code = await _issue(world)
    app = await world.db.clients.get("app")
    redeemed = await _redeem(world, code)
    first = await world.codes.start_family(app, redeemed)
    assert first.issued_at == T0 and first.subject == "u1"
    # The family's tokens rotate as usual before the replay.
    family = await world.db.refresh_tokens.list_family(redeemed.family_id)
    assert [t.id for t in family] == [first.jti]
    world.now[0] = T0 + 10
    await _refused(world, code, "code_reuse", "the authorization code is invalid")
    family = await world.db.refresh_tokens.list_family(redeemed.family_id)
    assert all(t.revoked_at is not None for t in family)
    message = f"{first.jti} {int(T0 + 86400)}"  # created + tokens.max_access_token_ttl
    assert world.denied == [message]
    rows = await world.db.change_feed.read_after(0, limit=1000)
    assert message in [r.message for r in rows if r.channel == feed.REVOKED_TOKENS]


async def test_a_replay_before_the_family_is_stored_still_revokes_it(world: World) -> None:
    # The race of a redemption's winner (redeemed, family not yet stored) and a replay.
    code = await _issue(world)
    app = await world.db.clients.get("app")
    redeemed = await _redeem(world, code)
    await _refused(world, code, "code_reuse", "the authorization code is invalid")
    assert world.denied == []  # nothing to revoke yet
    with pytest.raises(InvalidGrantError) as caught:
        await world.codes.start_family(app, redeemed)
    assert caught.value.reason == "code_reuse"
    family = await world.db.refresh_tokens.list_family(redeemed.family_id)
    assert len(family) == 1
    assert family[0].revoked_at is not None
    assert world.denied == [f"{family[0].id} {int(T0 + 86400)}"]
