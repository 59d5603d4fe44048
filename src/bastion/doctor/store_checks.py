"""Stored-state checks: signing keys, OAuth clients, API keys and admin users in the database.

:func:`check_store` reads (never writes) through the repositories; the one
question they cannot answer — when was a client last used — is one grouped
query over the audit log and refresh tokens. Thresholds are a
:class:`StoreLimits` so tests and operators can move them.

Admin users: bastion has no dedicated admin flag yet (the admin API authorizes
by token scope ``bastion:admin``); a user counts as an administrator when one of
its roles is in :attr:`StoreLimits.admin_roles` (``admin``, ``bastion:admin``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeVar

import sqlalchemy as sa

from bastion.apikeys.state import key_is_usable
from bastion.audit.events import EventTypes
from bastion.crypto.keys import MAX_RSA_BITS
from bastion.doctor.findings import Finding
from bastion.settings import Settings
from bastion.storage import ApiKey, Client, Database, SigningKey, User
from bastion.storage.models import Page, utcnow
from bastion.storage.sql import schema

T = TypeVar("T")

__all__ = ["MFA_KINDS", "StoreLimits", "check_store"]

#: Credential kinds that are a second factor (a recovery code alone is not).
MFA_KINDS: Final = frozenset({"totp", "webauthn"})
_TOKEN_EXCHANGE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
_USE_EVENTS: Final = (EventTypes.TOKEN_ISSUED, EventTypes.CLIENT_AUTH)
_PAGE: Final = 500
#: Most subjects named in one finding's detail (all of them are in ``subjects``).
_SHOWN: Final = 10


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """The ages beyond which stored things are reported."""

    signing_key_max_age: timedelta = timedelta(days=90)
    client_unused_after: timedelta = timedelta(days=30)
    client_secret_max_age: timedelta = timedelta(days=180)
    api_key_unused_after: timedelta = timedelta(days=90)
    admin_roles: frozenset[str] = frozenset({"admin", "bastion:admin"})


def _names(subjects: Sequence[str]) -> str:
    shown = ", ".join(subjects[:_SHOWN])
    more = len(subjects) - _SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


async def _every(
    list_page: Callable[..., Awaitable[Page[T]]],
) -> AsyncIterator[T]:
    """Every record a repository's keyset-paginated ``list`` returns, page by page."""
    cursor: str | None = None
    while True:
        page = await list_page(limit=_PAGE, cursor=cursor)
        for item in page.items:
            yield item
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _clients(db: Database) -> AsyncIterator[Client]:
    return _every(db.clients.list)


def _api_keys(db: Database) -> AsyncIterator[ApiKey]:
    return _every(db.api_keys.list)


def _users(db: Database) -> AsyncIterator[User]:
    return _every(db.users.list)


def _signing_keys(
    keys: Sequence[SigningKey], settings: Settings, limits: StoreLimits, now: datetime
) -> list[Finding]:
    max_age = limits.signing_key_max_age
    rotate_every = settings.signing_keys.rotate_every
    if rotate_every is not None:
        # A scheduled rotation that did not happen (no server ran, or it failed) shows here.
        max_age = min(max_age, timedelta(seconds=rotate_every) + timedelta(days=1))
    stale = [key for key in keys if key.state == "active" and now - key.created_at > max_age]
    old = [key.kid for key in stale]
    if not old:
        return []
    # One active key per algorithm: name the rotation of each algorithm that needs one.
    algs = ", ".join(sorted({key.alg for key in stale}))
    return [
        Finding(
            "signing_key.old",
            "high",
            "the active signing key is old",
            f"signing key(s) {_names(old)} have signed tokens for more than "
            f"{max_age.days} days: the longer a key signs, the more a leak of it exposes",
            f"run `bastion signing-keys rotate --algorithm ALG` for {algs} and set "
            "signing_keys.rotate_every (e.g. 30d)",
            tuple(old),
        )
    ]


def _rsa_bits(jwk: dict[str, object]) -> int:
    """The modulus size of an RSA public JWK (0 for any other key or a malformed ``n``)."""
    n = jwk.get("n")
    if jwk.get("kty") != "RSA" or not isinstance(n, str):
        return 0
    try:
        modulus = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (binascii.Error, ValueError):
        return 0
    return int.from_bytes(modulus, "big").bit_length()


def _oversized_keys(keys: Sequence[SigningKey], settings: Settings) -> list[Finding]:
    """With the signed identity assertion on: an RSA key the native gateway cannot sign with.

    bastion generates RSA keys of at most 4096 bits (ring signs with nothing larger); an older
    version may have stored a larger one, and while it is current every request to a route
    sending the assertion is refused (503 ``assertion_unavailable``): nothing goes upstream
    unsigned, and no Python pipeline signs it any more.
    """
    if not settings.identity_headers.assertion.enabled:
        return []
    large = [
        key.kid
        for key in keys
        if key.state in ("active", "next") and _rsa_bits(key.public_jwk) > MAX_RSA_BITS
    ]
    if not large:
        return []
    return [
        Finding(
            "signing_key.native_unsupported",
            "high",
            "a signing key is too large for the native gateway",
            f"signing key(s) {_names(large)} are RSA keys over {MAX_RSA_BITS} bits: while one "
            "is current, every authenticated request to a route sending the identity assertion "
            "is refused with 503 assertion_unavailable (the gateway cannot sign it)",
            "run `bastion signing-keys rotate` (new keys are at most 4096 bits)",
            tuple(large),
        )
    ]


async def _last_client_uses(db: Database, client_ids: Sequence[str]) -> set[str]:
    """The ids among ``client_ids`` that ever got a token or authenticated successfully."""
    if not client_ids:
        return set()
    events = schema.audit_events
    tokens = schema.refresh_tokens
    used: set[str] = set()
    for start in range(0, len(client_ids), _PAGE):
        chunk = list(client_ids[start : start + _PAGE])
        by_audit = (
            sa.select(events.c.client_id)
            .where(events.c.client_id.in_(chunk))
            .where(events.c.type.in_(_USE_EVENTS))
            .where(events.c.outcome == "success")
            .distinct()
        )
        by_refresh = sa.select(tokens.c.client_id).where(tokens.c.client_id.in_(chunk)).distinct()
        for statement in (by_audit, by_refresh):
            used.update(str(row["client_id"]) for row in await db.read_rows(statement))
    return used


async def _client_findings(db: Database, limits: StoreLimits, now: datetime) -> list[Finding]:
    candidates: list[str] = []
    stale_secret: list[str] = []
    broad: list[str] = []
    async for client in _clients(db):
        if client.disabled:
            continue
        if now - client.created_at > limits.client_unused_after:
            candidates.append(client.client_id)
        if client.client_type == "confidential" and client.token_endpoint_auth_method.startswith(
            "client_secret"
        ):
            secrets = await db.clients.list_secrets(client.client_id)
            current = [secret for secret in secrets if secret.expires_at is None]
            newest = max((secret.created_at for secret in current), default=None)
            if newest is not None and now - newest > limits.client_secret_max_age:
                stale_secret.append(client.client_id)
        grants = set(client.grant_types)
        if _TOKEN_EXCHANGE in grants or {"client_credentials", "authorization_code"} <= grants:
            broad.append(client.client_id)
    used = await _last_client_uses(db, candidates)
    unused = [client_id for client_id in candidates if client_id not in used]
    findings: list[Finding] = []
    if unused:
        findings.append(
            Finding(
                "client.unused",
                "low",
                "OAuth clients that were never used",
                f"client(s) {_names(unused)} are older than "
                f"{limits.client_unused_after.days} days and never obtained a token: "
                "forgotten credentials nobody watches",
                "disable or delete them: `bastion clients disable CLIENT_ID`",
                tuple(unused),
            )
        )
    if stale_secret:
        findings.append(
            Finding(
                "client.secret_old",
                "medium",
                "client secrets that were never rotated",
                f"client(s) {_names(stale_secret)} use a secret older than "
                f"{limits.client_secret_max_age.days} days",
                "rotate with a grace period: `bastion clients rotate-secret CLIENT_ID`, or "
                "move the client to private_key_jwt",
                tuple(stale_secret),
            )
        )
    if broad:
        findings.append(
            Finding(
                "client.broad_grants",
                "medium",
                "OAuth clients with broad grants",
                f"client(s) {_names(broad)} may exchange tokens (token exchange) or act both "
                "as a service (client_credentials) and for users (authorization_code)",
                "give each client only the grants it needs; use separate clients for "
                "service and user flows",
                tuple(broad),
            )
        )
    return findings


async def _api_key_findings(db: Database, limits: StoreLimits, now: datetime) -> list[Finding]:
    no_expiry: list[str] = []
    unused: list[str] = []
    async for key in _api_keys(db):
        if not key_is_usable(key, now.timestamp()):
            continue
        if key.expires_at is None and key.grace_until is None:
            no_expiry.append(key.id)
        last = key.last_used_at or key.created_at
        if now - last > limits.api_key_unused_after:
            unused.append(key.id)
    findings: list[Finding] = []
    if no_expiry:
        findings.append(
            Finding(
                "api_key.no_expiry",
                "medium",
                "API keys without expiry",
                f"{len(no_expiry)} active key(s) never expire: {_names(no_expiry)}",
                "rotate them into keys with an expiry: `bastion keys rotate KEY_ID`, then "
                "create new keys with --expires 90d",
                tuple(no_expiry),
            )
        )
    if unused:
        findings.append(
            Finding(
                "api_key.unused",
                "low",
                "API keys unused for a long time",
                f"{len(unused)} active key(s) were not used in "
                f"{limits.api_key_unused_after.days} days: {_names(unused)}",
                "revoke keys nobody uses: `bastion keys revoke KEY_ID`",
                tuple(unused),
            )
        )
    return findings


async def _admin_findings(db: Database, limits: StoreLimits) -> list[Finding]:
    without_mfa: list[str] = []
    async for user in _users(db):
        if user.disabled or not limits.admin_roles & set(user.roles):
            continue
        credentials = await db.users.list_credentials(user.id)
        if not any(credential.kind in MFA_KINDS for credential in credentials):
            without_mfa.append(user.username)
    if not without_mfa:
        return []
    return [
        Finding(
            "user.admin_without_mfa",
            "high",
            "administrators without MFA",
            f"user(s) {_names(without_mfa)} have an admin role and no TOTP or passkey: "
            "one phished password gives away the whole gateway",
            "enrol a second factor for each, or remove the admin role",
            tuple(without_mfa),
        )
    ]


async def check_store(
    db: Database,
    settings: Settings,
    *,
    limits: StoreLimits | None = None,
    now: datetime | None = None,
) -> list[Finding]:
    """Every stored-state finding (reads only).

    Raises whatever the repositories raise (e.g. ``DatabaseUnavailableError``);
    :func:`bastion.doctor.run_doctor` turns that into one ``store.unavailable`` finding.
    """
    limits = limits or StoreLimits()
    now = now or utcnow()
    signing_keys = await db.signing_keys.list()
    findings = _signing_keys(signing_keys, settings, limits, now)
    findings += _oversized_keys(signing_keys, settings)
    findings += await _client_findings(db, limits, now)
    findings += await _api_key_findings(db, limits, now)
    findings += await _admin_findings(db, limits)
    return findings
