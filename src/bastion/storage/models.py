"""The records of bastion's durable storage.

Each record is a frozen, slotted dataclass: what a repository returns and what
a caller hands to ``create``. Datetimes are timezone-aware UTC; list-valued
members are tuples, JSON objects are dicts. Secret material never appears in
plaintext: API keys and client secrets are stored as SHA-256 digests, and
``*_sealed`` members are opaque strings sealed and opened by the caller
(``bastion.crypto``) — the storage layer never sees what they contain.

Later features extend these records through new migrations; new members get
defaults so existing callers keep working.
"""

from __future__ import annotations

import itertools
import os
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

CredentialKind = Literal["totp", "webauthn", "recovery_code"]
ClientType = Literal["confidential", "public"]
OwnerType = Literal["user", "client"]
SigningKeyState = Literal["next", "active", "retiring", "retired"]


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


_sequence = itertools.count()


def new_id() -> str:
    """A new record id: 32 lower-case hex characters.

    12 characters of creation time in milliseconds, 4 of a per-process counter
    (so ids made in the same millisecond still sort in creation order) and 64
    random bits, so ids are unguessable and collision-free. Keyset pagination
    by id therefore follows creation order.
    """
    millis = time.time_ns() // 1_000_000
    return f"{millis:012x}{next(_sequence) % 0x10000:04x}{os.urandom(8).hex()}"


def normalize_username(username: str) -> str:
    """The form of a username that uniqueness and lookups use.

    NFKC then case-folding: ``Alice``, ``ALICE`` and ``alice`` (and compatibility
    look-alikes such as full-width letters) are the same user.
    """
    return unicodedata.normalize("NFKC", username).casefold()


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a keyset-paginated listing.

    ``next_cursor`` is an opaque string to pass back as ``cursor`` for the next
    page, or ``None`` when this is the last page.
    """

    items: tuple[T, ...]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A person who can log in (username unique case-insensitively)."""

    username: str
    id: str = field(default_factory=new_id)
    email: str | None = None
    email_verified: bool = False
    password_hash: str | None = None
    display_name: str = ""
    roles: tuple[str, ...] = ()
    disabled: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    password_changed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class UserCredential:
    """A second factor of a user: a TOTP seed, a WebAuthn passkey or a recovery code.

    ``secret_sealed`` is the sealed TOTP seed (``None`` for other kinds);
    ``data`` holds kind-specific public data (WebAuthn credential id, public
    key, sign count; a recovery code's digest).
    """

    user_id: str
    kind: CredentialKind
    name: str = ""
    secret_sealed: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """A registered OAuth 2.0 client."""

    client_id: str
    name: str = ""
    client_type: ClientType = "confidential"
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ()
    response_types: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    access_token_ttl: int | None = None
    jwks: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: The JWS algorithm of its ID tokens (OIDC Registration §2); ``None``: the server's
    #: default, the first of ``signing_keys.id_token_algorithms``.
    id_token_signed_response_alg: str | None = None
    disabled: bool = False
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    #: Where ``/oauth2/logout`` may send the browser afterwards (RP-Initiated Logout
    #: 1.0 §3.1): exact URIs.
    post_logout_redirect_uris: tuple[str, ...] = ()
    #: Where a logout token is posted when a session it signed into ends (Back-Channel
    #: Logout 1.0 §2.2), and whether it needs ``sid`` (bastion always sends it).
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False


@dataclass(frozen=True, slots=True)
class ClientSecret:
    """One secret of a client, stored as its SHA-256 hex digest.

    ``expires_at`` is set on a rotated-out secret: the end of its grace period.
    """

    client_id: str
    digest: str
    prefix: str = ""
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Grant:
    """A user's consent to a client for some scopes (an authorization family)."""

    user_id: str
    client_id: str
    scopes: tuple[str, ...] = ()
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """An issued authorization code, stored by the digest of the code.

    ``scope`` is the space-delimited OAuth scope string. The repository never
    judges expiry: the caller compares ``expires_at`` itself.
    """

    code_digest: str
    client_id: str
    user_id: str
    redirect_uri: str
    expires_at: datetime
    code_challenge: str
    code_challenge_method: str = "S256"
    grant_id: str | None = None
    scope: str = ""
    nonce: str | None = None
    auth_time: datetime | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict)
    consumed_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """An issued refresh token, stored by digest.

    ``family_id`` groups every token descending from one authorization (by
    convention the grant id); reuse of a rotated token revokes the family.
    ``parent_id`` is the token this one replaced.
    """

    token_digest: str
    family_id: str
    client_id: str
    user_id: str | None = None
    scope: str = ""
    expires_at: datetime | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key, stored by the SHA-256 digest of the full key.

    ``prefix`` is the non-secret part shown in listings. ``rate_limits`` holds
    per-key limits (e.g. ``{"per": "key", "rate": "100/minute"}``);
    ``rotated_from`` and ``grace_until`` describe a rotation with a grace period.
    """

    digest: str
    prefix: str
    name: str = ""
    owner_type: OwnerType | None = None
    owner_id: str | None = None
    scopes: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    expires_at: datetime | None = None
    rate_limits: tuple[dict[str, Any], ...] = ()
    ip_allow: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    disabled: bool = False
    revoked_at: datetime | None = None
    rotated_from: str | None = None
    grace_until: datetime | None = None
    last_used_at: datetime | None = None
    last_used_ip: str | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A token-signing key: public JWK in the clear, private key sealed."""

    kid: str
    alg: str
    public_jwk: dict[str, Any]
    private_key_sealed: str
    state: SigningKeyState = "next"
    created_at: datetime = field(default_factory=utcnow)
    activates_at: datetime | None = None
    retires_at: datetime | None = None
    retired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    """A delivery target for alerts and audit events; its signing secret is sealed."""

    url: str
    secret_sealed: str
    name: str = ""
    events: tuple[str, ...] = ()
    enabled: bool = True
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event of one node's hash chain (``node_id`` + ``seq`` unique).

    ``id`` is assigned by the database on append (``None`` before).
    """

    node_id: str
    seq: int
    occurred_at: datetime
    type: str
    outcome: str
    reason: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    subject: str | None = None
    client_id: str | None = None
    key_id: str | None = None
    route: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class AuditCheckpoint:
    """Where pruning cut a node's chain: the last deleted record's ``seq`` and ``hash``.

    The node's remaining chain continues from it (its first record has
    ``seq + 1`` and ``prev_hash == hash``). ``pruned`` counts the records deleted.
    """

    node_id: str
    seq: int
    hash: str
    occurred_at: datetime
    pruned: int = 0
    created_at: datetime = field(default_factory=utcnow)
    mac: str | None = None
    """HMAC of the checkpoint under a key derived from the master key (``audit/chain.py``);
    None on checkpoints from before bastion signed them."""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class SettingEntry:
    """A runtime setting or override: any JSON value under a key."""

    key: str
    value: Any
    updated_at: datetime = field(default_factory=utcnow)


__all__ = [
    "ApiKey",
    "AuditCheckpoint",
    "AuditEvent",
    "AuthorizationCode",
    "Client",
    "ClientSecret",
    "ClientType",
    "CredentialKind",
    "Grant",
    "OwnerType",
    "Page",
    "RefreshToken",
    "SettingEntry",
    "SigningKey",
    "SigningKeyState",
    "User",
    "UserCredential",
    "Webhook",
    "new_id",
    "normalize_username",
    "utcnow",
]
