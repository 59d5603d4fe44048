"""The signing-key lifecycle: first key, rotation with overlap, retirement, schedule, clusters.

Every lifecycle test runs on SQLite and PostgreSQL with an injected clock
(``now=``). Two managers on one database stand in for two bastion nodes.

bastion keeps one active key per algorithm (ES256 and RS256 by default); the
lifecycle tests here follow the ES256 keys (``states``, ``es256``, ``jwks_kids``),
``test_signing_keys_per_algorithm.py`` the algorithms side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from _support.signing_keys import HOLD, ISSUER, LEEWAY, MAX_TTL, PREPUBLISH, T0, make_settings
from _support.signing_keys import at as _at
from _support.subscriptions import subscribers
from _support.waiting import wait_until_async
from bastion.crypto import InvalidTokenError, JWTVerifier, Keyring, MasterKey, sign_jwt
from bastion.oauth import (
    NoActiveSigningKeyError,
    SigningKeyInUseError,
    SigningKeyManager,
)
from bastion.oauth.signing_keys import CHANNEL, plan_transitions
from bastion.storage import Database, NotFoundError, SigningKey
from bastion.storage.shared import MemorySharedState
from bastion.storage.sql.schema import seal_context


@pytest.fixture
def shared() -> MemorySharedState:
    return MemorySharedState()


@pytest.fixture
def manager(db: Database, keyring: Keyring, shared: MemorySharedState) -> SigningKeyManager:
    return SigningKeyManager(db, keyring, make_settings(), shared)


def verifier(manager: SigningKeyManager) -> JWTVerifier:
    return JWTVerifier(
        manager.public_key_set, issuer=ISSUER, audience="api", typ="at+jwt", leeway=LEEWAY
    )


def token(manager: SigningKeyManager, issued_at: float) -> str:
    claims = {
        "iss": ISSUER,
        "aud": "api",
        "sub": "svc",
        "iat": issued_at,
        "exp": issued_at + MAX_TTL,
    }
    return sign_jwt(claims, manager.current(), typ="at+jwt")


async def es256(db: Database) -> list[SigningKey]:
    """The stored ES256 keys (the lifecycle under test; the RS256 key lives beside them)."""
    return [key for key in await db.signing_keys.list() if key.alg == "ES256"]


async def states(db: Database) -> dict[str, str]:
    return {key.kid: key.state for key in await es256(db)}


def jwks_kids(manager: SigningKeyManager) -> set[str]:
    return {jwk["kid"] for jwk in manager.jwks()["keys"] if jwk["alg"] == "ES256"}


def es256_kids(manager: SigningKeyManager) -> tuple[str, ...]:
    return tuple(key.kid for key in manager.public_key_set() if key.alg == "ES256")


# --- first start -----------------------------------------------------------------------


async def test_current_before_load_is_refused(manager: SigningKeyManager) -> None:
    with pytest.raises(NoActiveSigningKeyError) as info:
        manager.current()
    assert info.value.code == "no_active_signing_key"
    assert info.value.status == 503


async def test_first_load_creates_one_active_key(
    manager: SigningKeyManager, db: Database, db2: Database, keyring: Keyring
) -> None:
    assert await manager.load(now=T0) is True
    [key] = await es256(db)
    assert key.state == "active"
    assert key.alg == "ES256"
    assert key.activates_at == _at(T0)
    assert manager.current().kid == key.kid
    assert es256_kids(manager) == (key.kid,)
    [jwk] = [jwk for jwk in manager.jwks()["keys"] if jwk["alg"] == "ES256"]
    assert jwk["kid"] == key.kid and jwk["alg"] == "ES256" and jwk["use"] == "sig"
    assert "d" not in jwk
    # Loading again, here or on another node, creates nothing.
    assert await manager.load(now=T0 + 1) is False
    other = SigningKeyManager(db2, keyring, make_settings(), MemorySharedState())
    assert await other.load(now=T0 + 2) is False
    assert other.current().kid == key.kid
    assert len(await es256(db)) == 1


async def test_private_key_is_sealed_under_its_kid(
    manager: SigningKeyManager, db: Database, keyring: Keyring
) -> None:
    await manager.load(now=T0)
    stored = (await es256(db))[0]
    assert "PRIVATE KEY" not in stored.private_key_sealed
    assert "d" not in stored.public_jwk
    context = seal_context("signing_keys", "private_key_sealed", stored.kid)
    pem = keyring.open(stored.private_key_sealed, context=context)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert repr(manager.current()) == f"SigningKeyPair(kid={stored.kid!r}, alg='ES256')"


# --- rotation with overlap -------------------------------------------------------------


async def test_rotation_prepublishes_overlaps_then_retires(
    manager: SigningKeyManager, db: Database
) -> None:
    await manager.load(now=T0)
    old = manager.current().kid
    before = token(manager, T0 + 50)

    new = await manager.rotate(now=T0 + 100)
    assert new.state == "next"
    assert new.activates_at == _at(T0 + 100 + PREPUBLISH)
    # Published before it signs.
    assert manager.current().kid == old
    assert jwks_kids(manager) == {old, new.kid}
    assert verifier(manager).verify(before, now=T0 + 200).kid == old

    await manager.refresh(now=T0 + 100 + PREPUBLISH - 1)
    assert manager.current().kid == old
    assert await states(db) == {old: "active", new.kid: "next"}

    switch = T0 + 100 + PREPUBLISH
    await manager.refresh(now=switch)
    assert manager.current().kid == new.kid
    assert await states(db) == {old: "retiring", new.kid: "active"}
    retiring = await db.signing_keys.get(old)
    assert retiring.retires_at == _at(switch + HOLD)
    assert jwks_kids(manager) == {old, new.kid}
    after = token(manager, switch + 1)
    # New tokens carry the new kid; tokens signed before the rotation still verify.
    assert verifier(manager).verify(after, now=switch + 2).kid == new.kid
    assert verifier(manager).verify(before, now=switch + 2).kid == old

    await manager.refresh(now=switch + HOLD - 1)
    assert old in jwks_kids(manager)

    await manager.refresh(now=switch + HOLD)
    assert await states(db) == {old: "retired", new.kid: "active"}
    assert jwks_kids(manager) == {new.kid}
    assert es256_kids(manager) == (new.kid,)
    with pytest.raises(InvalidTokenError) as info:
        verifier(manager).verify(before, now=switch + HOLD)
    assert info.value.reason == "unknown_kid"
    retired = await db.signing_keys.get(old)
    assert retired.retired_at == _at(switch + HOLD)
    # The row stays for audit, its private key still sealed (never wiped to plaintext).
    assert retired.private_key_sealed and "PRIVATE KEY" not in retired.private_key_sealed


async def test_refresh_is_idempotent(manager: SigningKeyManager, db: Database) -> None:
    await manager.load(now=T0)
    await manager.rotate(now=T0)
    await manager.refresh(now=T0 + PREPUBLISH)
    snapshot = await db.signing_keys.list()
    for _ in range(3):
        await manager.refresh(now=T0 + PREPUBLISH)
    assert await db.signing_keys.list() == snapshot


async def test_immediate_rotation_demotes_the_active_key(
    manager: SigningKeyManager, db: Database
) -> None:
    await manager.load(now=T0)
    old = manager.current().kid
    new = await manager.rotate(now=T0 + 10, immediate=True)
    assert new.state == "active"
    assert manager.current().kid == new.kid
    demoted = await db.signing_keys.get(old)
    assert demoted.state == "retiring"
    # One refresh interval more: nodes that have not heard may still sign with it.
    assert demoted.retires_at == _at(T0 + 10 + HOLD + manager.refresh_interval)


async def test_active_key_listeners_hear_each_change_once(
    manager: SigningKeyManager, db: Database
) -> None:
    heard: list[str | None] = []
    manager.on_active_changed(lambda key: heard.append(key.kid if key else None))
    await manager.load(now=T0)
    first = manager.current().kid
    await manager.refresh(now=T0 + 1)  # nothing changed: nothing heard
    await manager.rotate(now=T0 + 5)  # published as next: still the same active key
    assert heard == [first]
    new = await manager.rotate(now=T0 + 10, immediate=True)
    await manager.reload()
    assert heard == [first, new.kid]


async def test_rotate_with_no_key_makes_it_active_at_once(
    manager: SigningKeyManager, db: Database
) -> None:
    key = await manager.rotate(now=T0)
    assert key.state == "active"
    assert manager.current().kid == key.kid
    assert await states(db) == {key.kid: "active"}


@pytest.mark.parametrize("alg", ["EdDSA", "PS256"])
async def test_rotate_with_another_algorithm(
    db: Database, keyring: Keyring, shared: MemorySharedState, alg: Any
) -> None:
    # An algorithm bastion signs with: configured as an ID-token algorithm.
    settings = make_settings(id_token_algorithms=["ES256", "RS256", alg])
    manager = SigningKeyManager(db, keyring, settings, shared)
    await manager.load(now=T0)
    first = manager.current(alg).kid
    key = await manager.rotate(alg=alg, now=T0 + 1, immediate=True)
    assert key.alg == alg
    assert manager.current(alg).kid == key.kid != first
    assert manager.current().alg == "ES256"
    claims = {"iss": ISSUER, "aud": "api", "sub": "svc", "iat": T0 + 2, "exp": T0 + 60}
    issued = sign_jwt(claims, manager.current(alg), typ="at+jwt")
    assert verifier(manager).verify(issued, now=T0 + 3).header["alg"] == alg


async def test_configured_algorithm_is_used(
    db: Database, keyring: Keyring, shared: MemorySharedState
) -> None:
    manager = SigningKeyManager(
        db, keyring, make_settings(algorithm="RS256", rsa_key_size=2048), shared
    )
    await manager.load(now=T0)
    assert manager.current().alg == "RS256"
    # The access-token key comes first in the JWKS; ES256 (an ID-token algorithm) beside it.
    jwk = manager.jwks()["keys"][0]
    assert [k["alg"] for k in manager.jwks()["keys"]] == ["RS256", "ES256"]
    assert jwk["kty"] == "RSA"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


# --- retirement ------------------------------------------------------------------------


async def test_retire_refuses_the_active_key(manager: SigningKeyManager, db: Database) -> None:
    await manager.load(now=T0)
    kid = manager.current().kid
    with pytest.raises(SigningKeyInUseError) as info:
        await manager.retire(kid, now=T0 + 1)
    assert info.value.code == "signing_key_in_use"
    assert info.value.status == 409
    assert info.value.detail == (
        f"signing key {kid!r} is the active ES256 key and cannot be retired — make a "
        "replacement active first (`bastion signing-keys rotate --algorithm ES256 --now`), "
        f"then retire {kid!r}"
    )
    assert await states(db) == {kid: "active"}


async def test_emergency_rotate_then_retire_revokes_old_tokens(
    manager: SigningKeyManager, db: Database
) -> None:
    await manager.load(now=T0)
    old = manager.current().kid
    leaked = token(manager, T0 + 5)
    await manager.rotate(now=T0 + 10, immediate=True)
    assert verifier(manager).verify(leaked, now=T0 + 11).kid == old

    retired = await manager.retire(old, now=T0 + 12)
    assert retired.state == "retired"
    assert retired.retired_at == _at(T0 + 12)
    assert old not in jwks_kids(manager)
    # Not yet expired, but its key is gone: refused at once.
    with pytest.raises(InvalidTokenError) as info:
        verifier(manager).verify(leaked, now=T0 + 13)
    assert info.value.reason == "unknown_kid"
    # Retiring again is a no-op; later refreshes never bring it back.
    assert (await manager.retire(old, now=T0 + 20)).retired_at == _at(T0 + 12)
    await manager.refresh(now=T0 + 30)
    assert old not in jwks_kids(manager)


async def test_retire_a_next_key_and_unknown_kid(manager: SigningKeyManager, db: Database) -> None:
    await manager.load(now=T0)
    active = manager.current().kid
    pending = await manager.rotate(now=T0 + 1)
    await manager.retire(pending.kid, now=T0 + 2)
    assert jwks_kids(manager) == {active}
    await manager.refresh(now=T0 + 1 + PREPUBLISH)
    assert manager.current().kid == active
    assert await states(db) == {active: "active", pending.kid: "retired"}
    with pytest.raises(NotFoundError) as info:
        await manager.retire("no-such-kid")
    assert info.value.detail == "signing key 'no-such-kid' does not exist"


# --- scheduled rotation ----------------------------------------------------------------


async def test_scheduled_rotation(db: Database, keyring: Keyring) -> None:
    every = 86400.0
    manager = SigningKeyManager(db, keyring, make_settings(rotate_every=every), MemorySharedState())
    await manager.load(now=T0)
    first = manager.current().kid

    await manager.refresh(now=T0 + every - PREPUBLISH - 1)
    assert await states(db) == {first: "active"}

    # Created one pre-publication ahead, so it activates `every` after its predecessor.
    await manager.refresh(now=T0 + every - PREPUBLISH)
    pending = [k for k in await es256(db) if k.state == "next"]
    assert len(pending) == 1
    assert pending[0].activates_at == _at(T0 + every)
    await manager.refresh(now=T0 + every - PREPUBLISH + 5)
    assert len(await es256(db)) == 2

    await manager.refresh(now=T0 + every)
    second = manager.current().kid
    assert second == pending[0].kid
    assert await states(db) == {first: "retiring", second: "active"}

    # The schedule counts from the new key's activation.
    await manager.refresh(now=T0 + 2 * every - PREPUBLISH - 1)
    assert len(await es256(db)) == 2
    await manager.refresh(now=T0 + 2 * every - PREPUBLISH)
    assert [k.state for k in await es256(db)] == ["retired", "active", "next"]


async def test_no_schedule_without_rotate_every(manager: SigningKeyManager, db: Database) -> None:
    await manager.load(now=T0)
    await manager.refresh(now=T0 + 400 * 86400)
    assert len(await es256(db)) == 1


# --- several nodes ---------------------------------------------------------------------


async def _active(db: Database) -> list[str]:
    return [key.kid for key in await db.signing_keys.list(states=["active"]) if key.alg == "ES256"]


async def test_concurrent_refresh_converges_on_one_active_key(
    db: Database, db2: Database, keyring: Keyring
) -> None:
    node1 = SigningKeyManager(db, keyring, make_settings(), MemorySharedState())
    node2 = SigningKeyManager(db2, keyring, make_settings(), MemorySharedState())
    await node1.load(now=T0)
    await node2.load(now=T0)
    new = await node1.rotate(now=T0 + 1)
    for step in range(5):
        moment = T0 + 1 + PREPUBLISH + step
        await asyncio.gather(node1.refresh(now=moment), node2.refresh(now=moment))
        assert await _active(db) == [new.kid]
    assert node1.current().kid == node2.current().kid == new.kid


async def test_concurrent_first_start_converges(
    db: Database, db2: Database, keyring: Keyring
) -> None:
    node1 = SigningKeyManager(db, keyring, make_settings(), MemorySharedState())
    node2 = SigningKeyManager(db2, keyring, make_settings(), MemorySharedState())
    await asyncio.gather(node1.load(now=T0), node2.load(now=T0))
    await asyncio.gather(node1.refresh(now=T0 + 1), node2.refresh(now=T0 + 1))
    [active] = await _active(db)
    assert node1.current().kid == node2.current().kid == active
    # A key that lost the race may have signed: it stays published while retiring.
    published = {jwk["kid"] for jwk in node1.jwks()["keys"]}
    for key in await db.signing_keys.list():
        assert key.state in {"active", "retiring"}
        assert key.kid in published
    # One active key per algorithm, the same on both nodes.
    actives = await db.signing_keys.list(states=["active"])
    assert sorted(key.alg for key in actives) == ["ES256", "RS256"]
    assert node1.current("RS256").kid == node2.current("RS256").kid


async def test_two_next_keys_the_later_activation_wins(
    db: Database, db2: Database, keyring: Keyring
) -> None:
    node1 = SigningKeyManager(db, keyring, make_settings(), MemorySharedState())
    node2 = SigningKeyManager(db2, keyring, make_settings(), MemorySharedState())
    await node1.load(now=T0)
    old = node1.current().kid
    early, late = await asyncio.gather(node1.rotate(now=T0 + 1), node2.rotate(now=T0 + 2))
    await asyncio.gather(
        node1.refresh(now=T0 + 2 + PREPUBLISH), node2.refresh(now=T0 + 2 + PREPUBLISH)
    )
    assert await states(db) == {old: "retiring", early.kid: "retiring", late.kid: "active"}
    assert node1.current().kid == node2.current().kid == late.kid


def test_plan_transitions_is_deterministic() -> None:
    now = _at(T0)

    def key(kid: str, state: Any, activates: float, retires: float | None = None) -> SigningKey:
        return SigningKey(
            kid=kid,
            alg="ES256",
            public_jwk={},
            private_key_sealed="x",
            state=state,
            created_at=_at(T0 - 10_000),
            activates_at=_at(activates),
            retires_at=None if retires is None else _at(retires),
        )

    keys = [
        key("b", "active", T0 - 5000),
        key("a", "next", T0 - 1),
        key("c", "next", T0 - 2),
        key("d", "next", T0 + 1),
        key("e", "retiring", T0 - 9000, retires=T0),
        key("f", "retiring", T0 - 9000, retires=T0 + 1),
    ]
    plan = plan_transitions(keys, now, hold=timedelta(seconds=HOLD))
    assert [(t.kid, t.expected, t.state) for t in plan] == [
        ("a", ("next",), "active"),
        ("b", ("next", "active"), "retiring"),
        ("c", ("next", "active"), "retiring"),
        ("e", ("retiring",), "retired"),
    ]
    assert plan[1].changes == {"retires_at": now + timedelta(seconds=HOLD)}
    assert plan_transitions(reversed(keys), now, hold=timedelta(seconds=HOLD)) == plan


# --- memory is reloaded across nodes ---------------------------------------------------


async def _until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(manager: SigningKeyManager) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_pubsub_reloads_other_nodes(
    db: Database, db2: Database, keyring: Keyring, shared: MemorySharedState
) -> None:
    node1 = SigningKeyManager(db, keyring, make_settings(), shared)
    # A periodic refresh this rare cannot be what picks the change up.
    node2 = SigningKeyManager(db2, keyring, make_settings(), shared, refresh_interval=3600)
    await node1.load()
    await node2.load()
    messages = await shared.subscribe(CHANNEL)
    async with running(node2):
        # This test's subscription and node2's.
        await wait_until_async(lambda: _two_subscribed(shared), "node2's subscription")
        new = await node1.rotate(immediate=True)
        await _until(lambda: node2.current().kid == new.kid)
        assert await asyncio.wait_for(messages.__anext__(), 1) == b"changed"
        pending = await node1.rotate()
        await _until(lambda: pending.kid in jwks_kids(node2))
        await node1.retire(pending.kid)
        await _until(lambda: pending.kid not in jwks_kids(node2))
    await messages.close()


async def _two_subscribed(shared: MemorySharedState) -> bool:
    return await subscribers(shared, CHANNEL) == 2


async def test_run_switches_when_the_next_key_activates(
    db: Database, keyring: Keyring, shared: MemorySharedState
) -> None:
    settings = make_settings(prepublish=1, jwks_max_age=1)
    node = SigningKeyManager(db, keyring, settings, shared, refresh_interval=3600)
    watcher = SigningKeyManager(db, keyring, settings, MemorySharedState(), refresh_interval=3600)
    await node.load()
    await watcher.load()
    async with running(watcher):
        pending = await node.rotate()
        assert pending.state == "next"
        # The watcher hears nothing (its own shared state) and its interval is an hour:
        # it wakes because it knows when the key it loaded activates.
        await watcher.reload()
        await _until(lambda: watcher.current().kid == pending.kid, timeout=5)


async def test_run_survives_a_failing_refresh(
    db: Database, keyring: Keyring, shared: MemorySharedState, caplog: pytest.LogCaptureFixture
) -> None:
    node = SigningKeyManager(db, keyring, make_settings(), shared, refresh_interval=0.05)
    await node.load()
    kid = node.current().kid
    other = Keyring([MasterKey.generate()])
    node._keyring = other  # a master key that opens nothing stored
    node._pairs.clear()
    async with running(node):
        await asyncio.sleep(0.3)
    assert node.current().kid == kid
    assert "refresh failed" in caplog.text


# --- the change feed -------------------------------------------------------------------


async def test_every_key_change_is_on_the_change_feed(
    manager: SigningKeyManager, db: Database
) -> None:
    # Other processes (the CLI, other nodes) learn of rotations and retirements from here.
    await manager.load(now=T0)
    first = manager.current().kid
    rsa = manager.current("RS256").kid
    await manager.rotate(immediate=True, now=T0 + 10)
    second = manager.current().kid
    await manager.retire(first, now=T0 + 20)
    rows = [(r.channel, r.message) for r in await db.change_feed.read_after(0, limit=100)]
    assert rows == [
        ("signing-keys", first),  # created
        ("signing-keys", rsa),  # the RS256 key, created beside it
        ("signing-keys", second),  # created active, the first made retiring
        ("signing-keys", first),  # retired
    ]
