"""Stored-state checks over a real database (SQLite and PostgreSQL): planted weaknesses only."""

from __future__ import annotations

import base64
from datetime import timedelta

from bastion.doctor import Finding, StoreLimits, check_store
from bastion.settings import Settings
from bastion.storage import (
    ApiKey,
    AuditEvent,
    Client,
    ClientSecret,
    Database,
    RefreshToken,
    SigningKey,
    User,
    UserCredential,
)
from bastion.storage.models import utcnow

SETTINGS = Settings()
NOW = utcnow()
DAY = timedelta(days=1)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.id: finding for finding in findings}


def signing_key(kid: str, state: str, age: timedelta) -> SigningKey:
    return SigningKey(
        kid=kid,
        alg="ES256",
        public_jwk={"kty": "EC", "kid": kid},
        private_key_sealed="sealed",
        state=state,  # type: ignore[arg-type]
        created_at=NOW - age,
    )


def api_key(name: str, **members: object) -> ApiKey:
    return ApiKey(digest=f"digest-{name}", prefix=f"bst_{name}", name=name, **members)  # type: ignore[arg-type]


async def test_empty_database_has_no_findings(db: Database) -> None:
    assert await check_store(db, SETTINGS) == []


async def test_healthy_records_have_no_findings(db: Database) -> None:
    await db.signing_keys.create(signing_key("fresh", "active", 10 * DAY))
    await db.signing_keys.create(signing_key("old-retired", "retired", 400 * DAY))
    await db.clients.create(Client(client_id="svc", grant_types=("client_credentials",)))
    await db.clients.add_secret(ClientSecret(client_id="svc", digest="d-svc"))
    await db.api_keys.create(api_key("expiring", expires_at=NOW + 30 * DAY))
    await db.api_keys.create(api_key("revoked", revoked_at=NOW - DAY))
    admin = await db.users.create(User(username="alice", roles=("admin",)))
    await db.users.add_credential(UserCredential(user_id=admin.id, kind="totp"))
    await db.users.create(User(username="bob", roles=("viewer",)))
    assert await check_store(db, SETTINGS) == []


async def test_planted_weaknesses_are_found(db: Database) -> None:
    # signing key: active for 120 days
    await db.signing_keys.create(signing_key("stale", "active", 120 * DAY))
    # clients: one never used, one used (token issued), one used (refresh token),
    # one with a 200-day-old secret, one with broad grants
    for client_id in ("forgotten", "busy", "refreshing"):
        await db.clients.create(Client(client_id=client_id, created_at=NOW - 60 * DAY))
    await db.audit.append_batch(
        [
            AuditEvent(
                node_id="n1",
                seq=0,
                occurred_at=NOW - DAY,
                type="token.issued",
                outcome="success",
                client_id="busy",
            ),
            AuditEvent(
                node_id="n1",
                seq=1,
                occurred_at=NOW - DAY,
                type="token.issued",
                outcome="failure",
                client_id="forgotten",
            ),
        ]
    )
    await db.refresh_tokens.create(
        RefreshToken(token_digest="rt-1", family_id="f1", client_id="refreshing")
    )
    await db.clients.create(Client(client_id="stale-secret"))
    await db.clients.add_secret(
        ClientSecret(client_id="stale-secret", digest="d-old", created_at=NOW - 200 * DAY)
    )
    await db.clients.create(
        Client(client_id="do-it-all", grant_types=("client_credentials", "authorization_code"))
    )
    await db.clients.create(
        Client(
            client_id="exchanger", grant_types=("urn:ietf:params:oauth:grant-type:token-exchange",)
        )
    )
    # a disabled client is never reported
    await db.clients.create(Client(client_id="off", disabled=True, created_at=NOW - 90 * DAY))
    # API keys: one without expiry, one unused for 100 days (with expiry)
    forever = await db.api_keys.create(api_key("forever"))
    idle = await db.api_keys.create(
        api_key("idle", created_at=NOW - 100 * DAY, expires_at=NOW + 100 * DAY)
    )
    await db.api_keys.create(
        api_key(
            "recent",
            created_at=NOW - 100 * DAY,
            expires_at=NOW + 100 * DAY,
            last_used_at=NOW - DAY,
        )
    )
    # users: an admin without MFA (a recovery code is not a second factor)
    root = await db.users.create(User(username="root", roles=("bastion:admin",)))
    await db.users.add_credential(UserCredential(user_id=root.id, kind="recovery_code"))

    findings = by_id(await check_store(db, SETTINGS))
    assert {fid: (f.severity, f.subjects) for fid, f in findings.items()} == {
        "signing_key.old": ("high", ("stale",)),
        "client.unused": ("low", ("forgotten",)),
        "client.secret_old": ("medium", ("stale-secret",)),
        "client.broad_grants": ("medium", ("do-it-all", "exchanger")),
        "api_key.no_expiry": ("medium", (forever.id,)),
        "api_key.unused": ("low", (idle.id,)),
        "user.admin_without_mfa": ("high", ("root",)),
    }
    assert findings["signing_key.old"].detail.startswith(
        "signing key(s) stale have signed tokens for more than 90 days"
    )


async def test_signing_key_age_follows_rotate_every(db: Database) -> None:
    await db.signing_keys.create(signing_key("k", "active", 20 * DAY))
    assert await check_store(db, SETTINGS) == []
    weekly = Settings.model_validate({"signing_keys": {"rotate_every": "7d"}})
    finding = (await check_store(db, weekly))[0]
    assert (finding.id, finding.subjects) == ("signing_key.old", ("k",))
    assert "more than 8 days" in finding.detail


async def test_rsa_keys_over_4096_bits_are_reported_with_the_assertion_on(db: Database) -> None:
    def rsa(kid: str, bits: int, state: str) -> SigningKey:
        n = base64.urlsafe_b64encode((1 << (bits - 1)).to_bytes(bits // 8, "big")).rstrip(b"=")
        jwk = {"kty": "RSA", "kid": kid, "n": n.decode(), "e": "AQAB"}
        return SigningKey(kid=kid, alg="RS256", public_jwk=jwk, private_key_sealed="sealed",
                          state=state, created_at=NOW - DAY)  # type: ignore[arg-type]  # fmt: skip

    await db.signing_keys.create(rsa("big", 8192, "active"))
    await db.signing_keys.create(rsa("fine", 4096, "next"))
    await db.signing_keys.create(rsa("gone", 8192, "retired"))
    assert await check_store(db, SETTINGS) == []  # the assertion is off: nothing to sign
    signing = Settings.model_validate({"identity_headers": {"assertion": {"enabled": True}}})
    [finding] = await check_store(db, signing)
    assert (finding.id, finding.severity, finding.subjects) == (
        "signing_key.native_unsupported",
        "high",
        ("big",),
    )
    assert finding.detail.startswith("signing key(s) big are RSA keys over 4096 bits")


async def test_limits_are_adjustable(db: Database) -> None:
    await db.api_keys.create(api_key("young", created_at=NOW - 10 * DAY, expires_at=NOW + DAY))
    assert await check_store(db, SETTINGS) == []
    strict = StoreLimits(api_key_unused_after=timedelta(days=5))
    assert [f.id for f in await check_store(db, SETTINGS, limits=strict)] == ["api_key.unused"]
