"""One signing-key lifecycle per algorithm: ES256 and RS256 side by side.

bastion keeps one active key for ``signing_keys.algorithm`` (access tokens) and for each
of ``signing_keys.id_token_algorithms`` (ID tokens; ES256 and RS256 by default). Rotating,
retiring and converging one algorithm's keys never touches another's; every key is in the
JWKS with its own ``alg``, and a verifier takes the algorithm from the key its ``kid``
names, never from the token (RFC 8725 §3.1). SQLite and PostgreSQL, an injected clock;
two managers on one database stand in for two nodes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from _support.signing_keys import HOLD, ISSUER, LEEWAY, MAX_TTL, PREPUBLISH, T0, make_settings
from _support.signing_keys import at as _at
from bastion.crypto import InvalidTokenError, JWTVerifier, Keyring, sign_jwt
from bastion.crypto.keys import SigningKeyPair
from bastion.oauth import SigningKeyInUseError, SigningKeyManager
from bastion.oauth.signing_keys import (
    SigningAlgorithmNotConfiguredError,
    SigningKeyAlgorithmMismatchError,
    plan_transitions,
)
from bastion.settings import Settings
from bastion.storage import Database, SigningKey
from bastion.storage.shared import MemorySharedState


@pytest.fixture
def manager(db: Database, keyring: Keyring) -> SigningKeyManager:
    return SigningKeyManager(db, keyring, make_settings(), MemorySharedState())


async def by_alg(db: Database) -> dict[str, dict[str, str]]:
    """``{alg: {kid: state}}`` of every stored key."""
    found: dict[str, dict[str, str]] = {}
    for key in await db.signing_keys.list():
        found.setdefault(key.alg, {})[key.kid] = key.state
    return found


def claims(now: float) -> dict[str, Any]:
    return {"iss": ISSUER, "aud": "api", "sub": "svc", "iat": now, "exp": now + MAX_TTL}


def verifier(manager: SigningKeyManager) -> JWTVerifier:
    return JWTVerifier(
        manager.public_key_set, issuer=ISSUER, audience="api", typ="at+jwt", leeway=LEEWAY
    )


# --- first start, the JWKS ---------------------------------------------------------------


async def test_first_load_creates_one_active_key_per_algorithm(
    manager: SigningKeyManager, db: Database
) -> None:
    assert await manager.load(now=T0) is True
    stored = await by_alg(db)
    assert sorted(stored) == ["ES256", "RS256"]
    assert [list(keys.values()) for keys in stored.values()] == [["active"], ["active"]]
    es, rs = manager.current("ES256"), manager.current("RS256")
    assert manager.current() is es  # access tokens: signing_keys.algorithm
    assert (es.alg, rs.alg) == ("ES256", "RS256")
    assert manager.id_token_algorithms() == ("ES256", "RS256")
    # Every key published, each with its own alg, kid and use; no private member.
    jwks = manager.jwks()["keys"]
    assert [(jwk["kid"], jwk["alg"], jwk["use"], jwk["kty"]) for jwk in jwks] == [
        (es.kid, "ES256", "sig", "EC"),
        (rs.kid, "RS256", "sig", "RSA"),
    ]
    for jwk in jwks:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)
    assert {key.kid: key.alg for key in manager.public_key_set()} == {
        es.kid: "ES256",
        rs.kid: "RS256",
    }
    # Loading again creates nothing.
    assert await manager.load(now=T0 + 1) is False
    assert len(await db.signing_keys.list()) == 2


async def test_the_default_rsa_key_is_3072_bits(db: Database, keyring: Keyring) -> None:
    settings = Settings(issuer=ISSUER)
    assert settings.signing_keys.rsa_key_size == 3072
    manager = SigningKeyManager(db, keyring, settings, MemorySharedState())
    await manager.load(now=T0)
    [jwk] = [jwk for jwk in manager.jwks()["keys"] if jwk["alg"] == "RS256"]
    modulus = base64.urlsafe_b64decode(jwk["n"] + "=" * (-len(jwk["n"]) % 4))
    assert len(modulus) * 8 == 3072


async def test_configured_order_and_an_unconfigured_algorithm(
    db: Database, keyring: Keyring
) -> None:
    settings = make_settings(id_token_algorithms=["RS256", "ES256"])
    manager = SigningKeyManager(db, keyring, settings, MemorySharedState())
    await manager.load(now=T0)
    # The first configured is a client's default.
    assert manager.id_token_algorithms() == ("RS256", "ES256")
    with pytest.raises(SigningAlgorithmNotConfiguredError) as info:
        await manager.rotate(alg="EdDSA", now=T0 + 1)
    assert info.value.status == 400
    assert info.value.code == "signing_algorithm_not_configured"
    assert info.value.detail == (
        "bastion does not sign with 'EdDSA': it keeps keys for ES256, RS256 — add it to "
        "signing_keys.id_token_algorithms (or make it signing_keys.algorithm) first"
    )
    assert len(await db.signing_keys.list()) == 2
    with pytest.raises(Exception) as missing:
        manager.current("PS256")
    assert getattr(missing.value, "code", None) == "no_active_signing_key"


@pytest.mark.parametrize(
    ("algorithms", "message"),
    [
        (["ES256"], "id_token_algorithms ['ES256'] must include RS256"),
        ([], "id_token_algorithms [] must include RS256"),
        (["RS256", "RS256"], "id_token_algorithms ['RS256', 'RS256'] names an algorithm twice"),
    ],
)
def test_settings_require_rs256_once(algorithms: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(signing_keys={"id_token_algorithms": algorithms})
    assert message in str(info.value)


def test_settings_refuse_an_unknown_algorithm() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(signing_keys={"id_token_algorithms": ["RS256", "HS256"]})
    assert "id_token_algorithms" in str(info.value)


# --- one lifecycle per algorithm -----------------------------------------------------------


async def test_rotating_rs256_never_touches_es256(manager: SigningKeyManager, db: Database) -> None:
    await manager.load(now=T0)
    es, old_rs = manager.current("ES256").kid, manager.current("RS256").kid
    signed_before = sign_jwt(claims(T0 + 5), manager.current("RS256"), typ="at+jwt")

    new = await manager.rotate(alg="RS256", now=T0 + 10)
    assert (new.alg, new.state) == ("RS256", "next")
    assert new.activates_at == _at(T0 + 10 + PREPUBLISH)
    assert await by_alg(db) == {
        "ES256": {es: "active"},
        "RS256": {old_rs: "active", new.kid: "next"},
    }

    switch = T0 + 10 + PREPUBLISH
    await manager.refresh(now=switch)
    assert manager.current("RS256").kid == new.kid
    assert manager.current("ES256").kid == es
    assert await by_alg(db) == {
        "ES256": {es: "active"},
        "RS256": {old_rs: "retiring", new.kid: "active"},
    }
    assert verifier(manager).verify(signed_before, now=switch + 1).kid == old_rs

    await manager.refresh(now=switch + HOLD)
    assert await by_alg(db) == {
        "ES256": {es: "active"},
        "RS256": {old_rs: "retired", new.kid: "active"},
    }
    assert [jwk["kid"] for jwk in manager.jwks()["keys"]] == [es, new.kid]


async def test_emergency_rotation_and_retirement_per_algorithm(
    manager: SigningKeyManager, db: Database
) -> None:
    await manager.load(now=T0)
    es, old_rs = manager.current("ES256").kid, manager.current("RS256").kid
    leaked = sign_jwt(claims(T0 + 1), manager.current("RS256"), typ="at+jwt")

    with pytest.raises(SigningKeyInUseError) as info:
        await manager.retire(old_rs, now=T0 + 2)
    assert info.value.detail == (
        f"signing key {old_rs!r} is the active RS256 key and cannot be retired — make a "
        "replacement active first (`bastion signing-keys rotate --algorithm RS256 --now`), "
        f"then retire {old_rs!r}"
    )

    new = await manager.rotate(alg="RS256", now=T0 + 3, immediate=True)
    assert new.state == "active"
    assert await by_alg(db) == {
        "ES256": {es: "active"},  # the emergency UPDATE demoted the RS256 key only
        "RS256": {old_rs: "retiring", new.kid: "active"},
    }
    with pytest.raises(SigningKeyAlgorithmMismatchError) as mismatch:
        await manager.retire(old_rs, alg="ES256", now=T0 + 4)
    assert mismatch.value.status == 409
    assert mismatch.value.detail == f"signing key {old_rs!r} is an RS256 key, not ES256"

    await manager.retire(old_rs, alg="RS256", now=T0 + 5)
    assert [jwk["kid"] for jwk in manager.jwks()["keys"]] == [es, new.kid]
    with pytest.raises(InvalidTokenError) as refused:
        verifier(manager).verify(leaked, now=T0 + 6)
    assert refused.value.reason == "unknown_kid"
    assert manager.current("ES256").kid == es


async def test_an_algorithm_dropped_from_the_settings_retires(
    db: Database, keyring: Keyring
) -> None:
    before = SigningKeyManager(db, keyring, make_settings(), MemorySharedState())
    await before.load(now=T0)
    es = before.current("ES256").kid
    # ES256 no longer named anywhere: its key stops signing and stays published for the hold.
    after = SigningKeyManager(
        db,
        keyring,
        make_settings(algorithm="RS256", id_token_algorithms=["RS256"]),
        MemorySharedState(),
    )
    await after.load(now=T0 + 10)
    rs = after.current().kid
    assert after.current().alg == "RS256"
    assert await by_alg(db) == {"ES256": {es: "retiring"}, "RS256": {rs: "active"}}
    assert {jwk["kid"] for jwk in after.jwks()["keys"]} == {es, rs}
    assert after.id_token_algorithms() == ("RS256",)
    await after.refresh(now=T0 + 10 + HOLD)
    assert await by_alg(db) == {"ES256": {es: "retired"}, "RS256": {rs: "active"}}
    assert [jwk["kid"] for jwk in after.jwks()["keys"]] == [rs]


async def test_scheduled_rotation_runs_for_each_algorithm(db: Database, keyring: Keyring) -> None:
    every = 86400.0
    manager = SigningKeyManager(db, keyring, make_settings(rotate_every=every), MemorySharedState())
    await manager.load(now=T0)
    await manager.refresh(now=T0 + every - PREPUBLISH)
    pending = {k.alg: k.state for k in await db.signing_keys.list() if k.state == "next"}
    assert pending == {"ES256": "next", "RS256": "next"}
    await manager.refresh(now=T0 + every)
    actives = await db.signing_keys.list(states=["active"])
    assert sorted(key.alg for key in actives) == ["ES256", "RS256"]
    assert {key.activates_at for key in actives} == {_at(T0 + every)}


def test_plan_transitions_is_per_algorithm() -> None:
    now = _at(T0)

    def key(kid: str, alg: str, state: Any, activates: float) -> SigningKey:
        return SigningKey(
            kid=kid,
            alg=alg,
            public_jwk={},
            private_key_sealed="x",
            state=state,
            created_at=_at(T0 - 10_000),
            activates_at=_at(activates),
        )

    keys = [
        key("es-old", "ES256", "active", T0 - 5000),
        key("es-new", "ES256", "next", T0 - 1),
        # An RS256 key activated earlier than the ES256 candidate: still its own winner.
        key("rs-only", "RS256", "active", T0 - 9000),
        key("rs-later", "RS256", "next", T0 + 100),
        key("ps", "PS256", "active", T0 - 9000),
    ]
    hold = timedelta(seconds=HOLD)
    plan = plan_transitions(keys, now, hold=hold, algorithms=("ES256", "RS256"))
    assert [(t.kid, t.state) for t in plan] == [
        ("es-new", "active"),
        ("es-old", "retiring"),
        ("ps", "retiring"),  # PS256 is not configured: it stops signing
    ]
    # Without a configured set every stored algorithm keeps its own active key.
    assert [(t.kid, t.state) for t in plan_transitions(keys, now, hold=hold)] == [
        ("es-new", "active"),
        ("es-old", "retiring"),
    ]


# --- several nodes ---------------------------------------------------------------------


async def test_two_nodes_converge_per_algorithm(
    db: Database, db2: Database, keyring: Keyring
) -> None:
    node1 = SigningKeyManager(db, keyring, make_settings(), MemorySharedState())
    node2 = SigningKeyManager(db2, keyring, make_settings(), MemorySharedState())
    await asyncio.gather(node1.load(now=T0), node2.load(now=T0))
    await asyncio.gather(node1.refresh(now=T0 + 1), node2.refresh(now=T0 + 1))
    actives = await db.signing_keys.list(states=["active"])
    assert sorted(key.alg for key in actives) == ["ES256", "RS256"]
    for alg in ("ES256", "RS256"):
        assert node1.current(alg).kid == node2.current(alg).kid

    # Both nodes rotate RS256 at once: the later activation wins, ES256 untouched.
    es = node1.current("ES256").kid
    early, late = await asyncio.gather(
        node1.rotate(alg="RS256", now=T0 + 10), node2.rotate(alg="RS256", now=T0 + 11)
    )
    moment = T0 + 11 + PREPUBLISH
    await asyncio.gather(node1.refresh(now=moment), node2.refresh(now=moment))
    assert node1.current("RS256").kid == node2.current("RS256").kid == late.kid
    assert node1.current("ES256").kid == node2.current("ES256").kid == es
    states = await by_alg(db)
    assert states["RS256"][early.kid] == "retiring"
    assert list(states["ES256"].values()).count("active") == 1
    assert list(states["RS256"].values()).count("active") == 1


# --- verifiers pin the algorithm to the key ---------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(payload).encode())
    return f"{head}.{body}.{_b64(signature)}"


def signing_input(token: str) -> bytes:
    return token.rsplit(".", 1)[0].encode("ascii")


async def test_forged_tokens_on_the_rs256_key_are_refused(manager: SigningKeyManager) -> None:
    await manager.load(now=T0)
    rs, es = manager.current("RS256"), manager.current("ES256")
    check = verifier(manager)
    payload = claims(T0)
    genuine = sign_jwt(payload, rs, typ="at+jwt")
    assert check.verify(genuine, now=T0 + 1).header == {
        "alg": "RS256",
        "kid": rs.kid,
        "typ": "at+jwt",
    }

    # HS256 with the RSA public key (as published) for the HMAC secret (RFC 8725 §2.1).
    public_pem = json.dumps(rs.public_jwk()).encode()
    header = {"alg": "HS256", "kid": rs.kid, "typ": "at+jwt"}
    unsigned = forged(header, payload, b"")
    mac = hmac.new(public_pem, signing_input(unsigned), hashlib.sha256).digest()
    from cryptography.hazmat.primitives import serialization

    pem = rs.public_key.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac_pem = hmac.new(pem, signing_input(unsigned), hashlib.sha256).digest()
    stranger = SigningKeyPair.generate("ES256")
    es_on_rs_kid = forged({"alg": "ES256", "kid": rs.kid, "typ": "at+jwt"}, payload, b"")
    es_on_rs_kid_sig = stranger.sign(signing_input(es_on_rs_kid))
    rs_signed_es_kid = forged({"alg": "RS256", "kid": es.kid, "typ": "at+jwt"}, payload, b"")
    cases = {
        "hs256 with the jwk as secret": (forged(header, payload, mac), "alg_not_allowed"),
        "hs256 with the pem as secret": (forged(header, payload, mac_pem), "alg_not_allowed"),
        "none": (
            forged({"alg": "none", "kid": rs.kid, "typ": "at+jwt"}, payload, b""),
            "alg_not_allowed",
        ),
        "es256 header on the rs256 kid": (
            es_on_rs_kid.rsplit(".", 1)[0] + "." + _b64(es_on_rs_kid_sig),
            "alg_not_allowed",
        ),
        "rs256 signature under the es256 kid": (
            rs_signed_es_kid.rsplit(".", 1)[0]
            + "."
            + _b64(rs.sign(signing_input(rs_signed_es_kid))),
            "alg_not_allowed",
        ),
        "es256 header and kid, rs256 signature": (
            forged({"alg": "ES256", "kid": es.kid, "typ": "at+jwt"}, payload, b"")
            + _b64(rs.sign(b"x")),
            "bad_signature",
        ),
    }
    for name, (token, reason) in cases.items():
        with pytest.raises(InvalidTokenError) as info:
            check.verify(token, now=T0 + 1)
        assert info.value.reason == reason, name


# --- what discovery publishes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "published"),
    [(None, ["ES256", "RS256"]), (["RS256", "ES256", "EdDSA"], ["RS256", "ES256", "EdDSA"])],
)
async def test_discovery_publishes_the_algorithms_the_manager_signs_with(
    db: Database, keyring: Keyring, configured: list[str] | None, published: list[str]
) -> None:
    from bastion.protocol.oidc.discovery import openid_configuration

    extra = {} if configured is None else {"id_token_algorithms": configured}
    manager = SigningKeyManager(db, keyring, make_settings(**extra), MemorySharedState())
    assert manager.id_token_algorithms() == ()  # nothing loaded: nothing to promise
    await manager.load(now=T0)
    document = openid_configuration(
        ISSUER,
        endpoints={
            "authorization_endpoint": "/oauth2/authorize",
            "token_endpoint": "/oauth2/token",
            "jwks_uri": "/oauth2/jwks.json",
        },
        grant_types=["authorization_code"],
        auth_methods=["none"],
        client_assertion_algs=["ES256"],
        id_token_signing_algs=manager.id_token_algorithms(),
        scopes_supported=["openid"],
        claims_supported=["sub"],
    )
    assert document["id_token_signing_alg_values_supported"] == published
    # Each one has its active key in the JWKS the document points at.
    assert {jwk["alg"] for jwk in manager.jwks()["keys"]} >= set(published)
