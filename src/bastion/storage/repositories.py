"""Repository interfaces of bastion's durable storage.

Conventions shared by every repository:

- ``create(record)`` stores a new record and returns it; a duplicate primary key
  or unique value raises :class:`~bastion.storage.errors.ConflictError`, a
  reference to a missing parent (e.g. a credential of an unknown user) raises
  :class:`~bastion.storage.errors.NotFoundError`.
- ``get(id)`` returns the record or raises ``NotFoundError``; ``find_*`` returns
  ``None`` when nothing matches (the natural shape for lookups by a presented
  secret, where "no match" is an ordinary outcome).
- ``update(id, **changes)`` changes exactly the named members and returns the
  updated record; unknown or immutable member names raise ``TypeError`` (a
  programming error); ``updated_at`` is set automatically where the record has
  one, unless given. Missing record: ``NotFoundError``.
- ``delete(id)`` removes the record or raises ``NotFoundError``.
- ``list(limit=, cursor=)`` is keyset-paginated and returns a
  :class:`~bastion.storage.models.Page`; a foreign cursor raises
  :class:`~bastion.storage.outcomes.InvalidCursorError`.
- Every method may raise :class:`~bastion.storage.errors.DatabaseUnavailableError`
  when the database cannot be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from bastion.storage.models import (
    ApiKey,
    AuditCheckpoint,
    AuditEvent,
    AuthorizationCode,
    Client,
    ClientSecret,
    CredentialKind,
    Grant,
    Page,
    RefreshToken,
    SettingEntry,
    SigningKey,
    SigningKeyState,
    User,
    UserCredential,
    Webhook,
)


class UserRepository(Protocol):
    """Users and their second-factor credentials."""

    async def create(self, user: User) -> User:
        """Store a new user; ``ConflictError`` if the username (case-insensitively) exists."""
        ...

    async def get(self, user_id: str) -> User:
        """The user with this id; ``NotFoundError`` if none."""
        ...

    async def find_by_username(self, username: str) -> User | None:
        """The user with this username, compared case-insensitively, or ``None``."""
        ...

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[User]:
        """Users in creation order."""
        ...

    async def update(self, user_id: str, **changes: Any) -> User:
        """Change the named members; ``ConflictError`` if a new username is taken."""
        ...

    async def delete(self, user_id: str) -> None:
        """Delete the user and everything that belongs to them (credentials, grants, codes)."""
        ...

    async def add_credential(self, credential: UserCredential) -> UserCredential:
        """Store a credential; ``NotFoundError`` if its user does not exist."""
        ...

    async def get_credential(self, credential_id: str) -> UserCredential:
        """The credential with this id; ``NotFoundError`` if none."""
        ...

    async def list_credentials(
        self, user_id: str, *, kind: CredentialKind | None = None
    ) -> tuple[UserCredential, ...]:
        """A user's credentials (optionally of one kind) in creation order."""
        ...

    async def update_credential(self, credential_id: str, **changes: Any) -> UserCredential:
        """Change the named members of a credential (e.g. ``data``, ``last_used_at``)."""
        ...

    async def delete_credential(self, credential_id: str) -> None:
        """Delete a credential; ``NotFoundError`` if none."""
        ...


class ClientRepository(Protocol):
    """OAuth clients and their secrets."""

    async def create(self, client: Client) -> Client:
        """Store a new client; ``ConflictError`` if the client_id exists."""
        ...

    async def get(self, client_id: str) -> Client:
        """The client; ``NotFoundError`` if none."""
        ...

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[Client]:
        """Clients ordered by client_id."""
        ...

    async def update(self, client_id: str, **changes: Any) -> Client:
        """Change the named members of a client."""
        ...

    async def delete(self, client_id: str) -> None:
        """Delete the client with its secrets, grants, codes and refresh tokens."""
        ...

    async def add_secret(self, secret: ClientSecret) -> ClientSecret:
        """Store a secret digest; ``ConflictError`` on a duplicate digest, ``NotFoundError``
        if the client does not exist."""
        ...

    async def find_secret(self, digest: str) -> ClientSecret | None:
        """The secret with this digest (indexed equality lookup), or ``None``."""
        ...

    async def list_secrets(self, client_id: str) -> tuple[ClientSecret, ...]:
        """A client's secrets in creation order."""
        ...

    async def set_secret_expiry(self, secret_id: str, expires_at: datetime | None) -> ClientSecret:
        """Set (or clear) the end of a secret's grace period; ``NotFoundError`` if none."""
        ...

    async def delete_secret(self, secret_id: str) -> None:
        """Delete a secret; ``NotFoundError`` if none."""
        ...


class GrantRepository(Protocol):
    """Users' consents to clients."""

    async def create(self, grant: Grant) -> Grant:
        """Store a grant; ``NotFoundError`` if the user or client does not exist."""
        ...

    async def get(self, grant_id: str) -> Grant:
        """The grant; ``NotFoundError`` if none."""
        ...

    async def find_active(self, user_id: str, client_id: str) -> Grant | None:
        """The newest unrevoked grant of this user to this client, or ``None``."""
        ...

    async def list_for_user(self, user_id: str) -> tuple[Grant, ...]:
        """A user's grants (revoked ones too) in creation order."""
        ...

    async def update(self, grant_id: str, **changes: Any) -> Grant:
        """Change the named members of a grant (e.g. ``scopes``)."""
        ...

    async def revoke(self, grant_id: str, now: datetime) -> Grant:
        """Mark the grant revoked (idempotent: keeps the first ``revoked_at``)."""
        ...

    async def delete(self, grant_id: str) -> None:
        """Delete a grant and the codes issued under it; ``NotFoundError`` if none."""
        ...


class AuthorizationCodeRepository(Protocol):
    """Single-use authorization codes."""

    async def create(self, code: AuthorizationCode) -> AuthorizationCode:
        """Store a code; ``ConflictError`` on a duplicate digest."""
        ...

    async def get(self, code_digest: str) -> AuthorizationCode:
        """The stored code (consumed or not); ``NotFoundError`` if none."""
        ...

    async def consume(self, code_digest: str, now: datetime) -> AuthorizationCode:
        """Atomically mark the code used and return it (with ``consumed_at=now``).

        Exactly one of any number of concurrent calls succeeds. Raises
        ``NotFoundError`` for an unknown code and
        :class:`~bastion.storage.outcomes.CodeReplayError` (carrying the record)
        when it was already consumed. Expiry is the caller's check.
        """
        ...

    async def delete_expired(self, before: datetime) -> int:
        """Delete codes that expired before ``before``; returns how many."""
        ...


class RefreshTokenRepository(Protocol):
    """Refresh tokens with rotation and reuse detection."""

    async def create(self, token: RefreshToken) -> RefreshToken:
        """Store a token; ``ConflictError`` on a duplicate digest."""
        ...

    async def get(self, token_id: str) -> RefreshToken:
        """The token with this id; ``NotFoundError`` if none."""
        ...

    async def find_by_digest(self, token_digest: str) -> RefreshToken | None:
        """The token with this digest, or ``None``."""
        ...

    async def rotate(self, old_digest: str, new_token: RefreshToken, now: datetime) -> RefreshToken:
        """Atomically retire the old token and store its successor; returns the old token.

        ``new_token`` is stored with ``family_id`` and ``parent_id`` taken from
        the old token. Exactly one of concurrent rotations of one token wins.
        Raises ``NotFoundError`` for an unknown digest,
        :class:`~bastion.storage.outcomes.RefreshTokenReuseError` when the old
        token was already rotated (revoke its family), and
        :class:`~bastion.storage.outcomes.RefreshTokenRevokedError` when it was
        revoked. Expiry is the caller's check.
        """
        ...

    async def revoke(self, token_id: str, now: datetime) -> None:
        """Revoke one token (idempotent); ``NotFoundError`` if none."""
        ...

    async def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every unrevoked token of a family; returns how many were revoked."""
        ...

    async def list_family(self, family_id: str) -> tuple[RefreshToken, ...]:
        """The tokens of a family in creation order."""
        ...

    async def delete_expired(self, before: datetime) -> int:
        """Delete tokens that expired before ``before``; returns how many."""
        ...


class ApiKeyRepository(Protocol):
    """API keys, looked up by digest on the gateway path."""

    async def create(self, key: ApiKey) -> ApiKey:
        """Store a key; ``ConflictError`` on a duplicate id or digest."""
        ...

    async def get(self, key_id: str) -> ApiKey:
        """The key; ``NotFoundError`` if none."""
        ...

    async def find_by_prefix(self, prefix: str, *, limit: int = 10) -> tuple[ApiKey, ...]:
        """Up to ``limit`` keys whose display prefix is ``prefix``, oldest first."""
        ...

    async def find_by_digest(self, digest: str) -> ApiKey | None:
        """The key with this digest (one indexed equality query), or ``None``."""
        ...

    async def list(
        self,
        *,
        owner_type: str | None = None,
        owner_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[ApiKey]:
        """Keys in creation order, optionally only those of one owner."""
        ...

    async def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Change the named members of a key (revocation, rotation, limits …)."""
        ...

    async def touch_last_used(self, key_id: str, at: datetime, ip: str | None) -> None:
        """Record a use: one UPDATE, no read; a missing key is ignored."""
        ...

    async def touch_last_used_many(self, uses: Sequence[tuple[str, datetime, str | None]]) -> None:
        """Record many uses ``(key_id, at, ip)`` in one transaction (one batched UPDATE).

        A use older than the stored last use is ignored (nodes flush independently);
        missing keys are ignored.
        """
        ...

    async def delete(self, key_id: str) -> None:
        """Delete a key; ``NotFoundError`` if none."""
        ...


class SigningKeyRepository(Protocol):
    """Token-signing keys and their rotation states."""

    async def create(self, key: SigningKey) -> SigningKey:
        """Store a key; ``ConflictError`` if the kid exists."""
        ...

    async def get(self, kid: str) -> SigningKey:
        """The key; ``NotFoundError`` if none."""
        ...

    async def list(
        self, *, states: Sequence[SigningKeyState] | None = None
    ) -> tuple[SigningKey, ...]:
        """Keys (optionally only in some states) in creation order."""
        ...

    async def update(self, kid: str, **changes: Any) -> SigningKey:
        """Change the named members (e.g. ``state``, ``retired_at``)."""
        ...

    async def delete(self, kid: str) -> None:
        """Delete a key; ``NotFoundError`` if none."""
        ...


class WebhookRepository(Protocol):
    """Alert and audit delivery targets."""

    async def create(self, webhook: Webhook) -> Webhook:
        """Store a webhook; ``ConflictError`` if the id exists."""
        ...

    async def get(self, webhook_id: str) -> Webhook:
        """The webhook; ``NotFoundError`` if none."""
        ...

    async def list(self, *, enabled_only: bool = False) -> tuple[Webhook, ...]:
        """Webhooks in creation order."""
        ...

    async def update(self, webhook_id: str, **changes: Any) -> Webhook:
        """Change the named members of a webhook."""
        ...

    async def delete(self, webhook_id: str) -> None:
        """Delete a webhook; ``NotFoundError`` if none."""
        ...


class AuditRepository(Protocol):
    """The append-only audit log (one hash chain per node)."""

    async def append_batch(self, events: Sequence[AuditEvent]) -> int:
        """Append events in ONE transaction; returns how many.

        A duplicate ``(node_id, seq)`` raises ``ConflictError`` and nothing of
        the batch is written.
        """
        ...

    async def search(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        subject: str | None = None,
        type: str | None = None,
        outcome: str | None = None,
        node_id: str | None = None,
        key_id: str | None = None,
        client_id: str | None = None,
        route: str | None = None,
        reason: str | None = None,
        request_id: str | None = None,
        ip: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = True,
    ) -> Page[AuditEvent]:
        """Events matching every given filter (``since`` inclusive, ``until`` exclusive),
        keyset-paginated in append order (newest first by default)."""
        ...

    async def last_for_node(self, node_id: str) -> AuditEvent | None:
        """The node's event with the highest ``seq``, or ``None``."""
        ...

    async def chain(
        self, node_id: str, *, after_seq: int = -1, limit: int = 1000
    ) -> tuple[AuditEvent, ...]:
        """A node's events with ``seq > after_seq`` in ``seq`` order (for chain checks)."""
        ...

    async def nodes(self) -> tuple[str, ...]:
        """Every node id with stored events or checkpoints, sorted."""
        ...

    async def prune_before(
        self, before: datetime, *, sign: Callable[[AuditCheckpoint], str]
    ) -> tuple[AuditCheckpoint, ...]:
        """Delete, per node, the records up to the last one that occurred before ``before``.

        In the same transaction as each node's delete, stores an
        :class:`AuditCheckpoint` (the seq and hash of the last deleted record),
        its ``mac`` set to ``sign(checkpoint)``, so the remaining chain still
        verifies. The newest checkpoint of a node stays the anchor; returns the
        checkpoints written (none: nothing old).
        """
        ...

    async def set_checkpoint_mac(self, checkpoint_id: int, mac: str) -> None:
        """Store ``mac`` as the authentication tag of checkpoint ``checkpoint_id``."""
        ...

    async def checkpoints(self, node_id: str) -> tuple[AuditCheckpoint, ...]:
        """The node's pruning checkpoints, oldest first."""
        ...

    async def latest_checkpoint(self, node_id: str) -> AuditCheckpoint | None:
        """The node's checkpoint with the highest ``seq`` (its chain's anchor), or ``None``."""
        ...


class SettingsRepository(Protocol):
    """Runtime settings and overrides (JSON values by key)."""

    async def get(self, key: str) -> SettingEntry:
        """The entry; ``NotFoundError`` if none."""
        ...

    async def find(self, key: str) -> SettingEntry | None:
        """The entry, or ``None``."""
        ...

    async def set(self, key: str, value: Any, *, now: datetime | None = None) -> SettingEntry:
        """Insert or replace the value under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Delete the entry; ``NotFoundError`` if none."""
        ...

    async def list(self) -> tuple[SettingEntry, ...]:
        """Every entry, ordered by key."""
        ...


__all__ = [
    "ApiKeyRepository",
    "AuditRepository",
    "AuthorizationCodeRepository",
    "ClientRepository",
    "GrantRepository",
    "RefreshTokenRepository",
    "SettingsRepository",
    "SigningKeyRepository",
    "UserRepository",
    "WebhookRepository",
]
