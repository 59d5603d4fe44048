"""The SQL schema of bastion's durable storage (SQLAlchemy Core), portable to SQLite and PostgreSQL.

This module is the source of truth the migrations must reproduce: a test runs
Alembic's ``compare_metadata`` against a migrated database of each dialect and
expects no difference. Change it only together with a new migration.

Every column holding a sealed secret is listed in :data:`SEALED_COLUMNS`, which
master-key rotation (``Database.rewrap_sealed``) walks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime on every dialect.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are
    stored as naive UTC text (which also sorts correctly) and made aware again
    when read. Naive datetimes are refused: they are always a bug here.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the database; use aware UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> sa.JSON:
    # none_as_null: a Python None is SQL NULL, never the JSON text 'null'.
    return sa.JSON(none_as_null=True)


def _cascading_reference(
    name: str, type_: sa.String, target: str, *, nullable: bool = False
) -> sa.Column[str]:
    """A column referring to ``target`` (``table.column``): deleting that row deletes this one."""
    return sa.Column(name, type_, sa.ForeignKey(target, ondelete="CASCADE"), nullable=nullable)


# BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" is the autoincrementing rowid.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 64  # length of id columns: ids are 32 hex chars; room for client-chosen ids

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    sa.Column("username", sa.String(255), nullable=False),
    sa.Column("username_normalized", sa.String(255), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("email_verified", sa.Boolean(), nullable=False),
    sa.Column("password_hash", sa.Text(), nullable=True),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("roles", _json(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # When the password was last set (0005): later work ends sessions older than it.
    sa.Column("password_changed_at", UTCDateTime(), nullable=True),
    sa.Index("ix_users_username_normalized", "username_normalized", unique=True),
    sa.Index("ix_users_email", "email"),
)

user_credentials = sa.Table(
    "user_credentials",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    _cascading_reference("user_id", sa.String(ID), "users.id"),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("secret_sealed", sa.Text(), nullable=True),
    sa.Column("data", _json(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Index("ix_user_credentials_user_id", "user_id"),
)

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(255), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("client_type", sa.String(32), nullable=False),
    sa.Column("token_endpoint_auth_method", sa.String(64), nullable=False),
    sa.Column("redirect_uris", _json(), nullable=False),
    sa.Column("grant_types", _json(), nullable=False),
    sa.Column("response_types", _json(), nullable=False),
    sa.Column("scopes", _json(), nullable=False),
    sa.Column("audiences", _json(), nullable=False),
    sa.Column("access_token_ttl", sa.Integer(), nullable=True),
    sa.Column("jwks", _json(), nullable=True),
    sa.Column("metadata", _json(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # OIDC Registration §2; NULL: the first of signing_keys.id_token_algorithms (0008).
    sa.Column("id_token_signed_response_alg", sa.String(32), nullable=True),
    # OpenID Connect RP-Initiated Logout 1.0 §3.1: exact URIs, a JSON array (0009).
    sa.Column("post_logout_redirect_uris", _json(), nullable=False),
    # OpenID Connect Back-Channel Logout 1.0 §2.2 (0010).
    sa.Column("backchannel_logout_uri", sa.String(2048), nullable=True),
    sa.Column("backchannel_logout_session_required", sa.Boolean(), nullable=False),
)

client_secrets = sa.Table(
    "client_secrets",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    _cascading_reference("client_id", sa.String(255), "clients.client_id"),
    sa.Column("digest", sa.String(128), nullable=False),
    sa.Column("prefix", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Index("ix_client_secrets_digest", "digest", unique=True),
    sa.Index("ix_client_secrets_client_id", "client_id"),
)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    _cascading_reference("user_id", sa.String(ID), "users.id"),
    _cascading_reference("client_id", sa.String(255), "clients.client_id"),
    sa.Column("scopes", _json(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index("ix_grants_user_id_client_id", "user_id", "client_id"),
    sa.Index("ix_grants_client_id", "client_id"),
)

authorization_codes = sa.Table(
    "authorization_codes",
    metadata,
    sa.Column("code_digest", sa.String(128), primary_key=True),
    _cascading_reference("client_id", sa.String(255), "clients.client_id"),
    _cascading_reference("user_id", sa.String(ID), "users.id"),
    _cascading_reference("grant_id", sa.String(ID), "grants.id", nullable=True),
    sa.Column("redirect_uri", sa.Text(), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("code_challenge_method", sa.String(16), nullable=False),
    sa.Column("nonce", sa.Text(), nullable=True),
    sa.Column("auth_time", UTCDateTime(), nullable=True),
    sa.Column("acr", sa.String(255), nullable=True),
    sa.Column("amr", _json(), nullable=False),
    sa.Column("claims", _json(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("consumed_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_authorization_codes_expires_at", "expires_at"),
    sa.Index("ix_authorization_codes_client_id", "client_id"),
    sa.Index("ix_authorization_codes_user_id", "user_id"),
    sa.Index("ix_authorization_codes_grant_id", "grant_id"),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    sa.Column("token_digest", sa.String(128), nullable=False),
    sa.Column("family_id", sa.String(ID), nullable=False),
    _cascading_reference("client_id", sa.String(255), "clients.client_id"),
    _cascading_reference("user_id", sa.String(ID), "users.id", nullable=True),
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("rotated_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    # No foreign key: the parent may be purged before its descendants.
    sa.Column("parent_id", sa.String(ID), nullable=True),
    sa.Index("ix_refresh_tokens_token_digest", "token_digest", unique=True),
    sa.Index("ix_refresh_tokens_family_id", "family_id"),
    sa.Index("ix_refresh_tokens_client_id", "client_id"),
    sa.Index("ix_refresh_tokens_user_id", "user_id"),
    sa.Index("ix_refresh_tokens_expires_at", "expires_at"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    sa.Column("prefix", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(128), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    # Polymorphic owner ('user' | 'client'): no foreign key.
    sa.Column("owner_type", sa.String(16), nullable=True),
    sa.Column("owner_id", sa.String(255), nullable=True),
    sa.Column("scopes", _json(), nullable=False),
    sa.Column("routes", _json(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_ip", sa.String(64), nullable=True),
    sa.Column("rate_limits", _json(), nullable=False),
    sa.Column("ip_allow", _json(), nullable=False),
    sa.Column("metadata", _json(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("rotated_from", sa.String(ID), nullable=True),
    sa.Column("grace_until", UTCDateTime(), nullable=True),
    sa.Index("ix_api_keys_digest", "digest", unique=True),
    sa.Index("ix_api_keys_owner_type_owner_id", "owner_type", "owner_id"),
    sa.Index("ix_api_keys_prefix", "prefix"),  # `bastion keys show PREFIX` (0004)
)

signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("kid", sa.String(255), primary_key=True),
    sa.Column("alg", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("public_jwk", _json(), nullable=False),
    sa.Column("private_key_sealed", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("activates_at", UTCDateTime(), nullable=True),
    sa.Column("retires_at", UTCDateTime(), nullable=True),
    sa.Column("retired_at", UTCDateTime(), nullable=True),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("secret_sealed", sa.Text(), nullable=False),
    sa.Column("events", _json(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("node_id", sa.String(255), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("type", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(255), nullable=True),
    sa.Column("request_id", sa.String(128), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("user_agent", sa.Text(), nullable=True),
    sa.Column("subject", sa.String(255), nullable=True),
    sa.Column("client_id", sa.String(255), nullable=True),
    sa.Column("key_id", sa.String(255), nullable=True),
    sa.Column("route", sa.String(255), nullable=True),
    sa.Column("data", _json(), nullable=False),
    sa.Column("prev_hash", sa.String(128), nullable=False),
    sa.Column("hash", sa.String(128), nullable=False),
    sa.UniqueConstraint("node_id", "seq", name="uq_audit_events_node_id_seq"),
    sa.Index("ix_audit_events_occurred_at", "occurred_at"),
    sa.Index("ix_audit_events_subject", "subject"),
    # The filters of `bastion audit search` that pick few rows (0004); route, outcome,
    # reason and type are few-valued: they narrow a --since range (occurred_at).
    sa.Index("ix_audit_events_key_id", "key_id"),
    sa.Index("ix_audit_events_client_id", "client_id"),
    sa.Index("ix_audit_events_request_id", "request_id"),
    sa.Index("ix_audit_events_ip", "ip"),
)

# Where pruning cut each node's chain: the seq and hash of the last deleted record,
# from which `bastion audit verify` continues the chain (audit/chain.py).
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("node_id", sa.String(255), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(128), nullable=False),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("pruned", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # HMAC of the checkpoint under a key derived from the master key (0004); NULL on rows
    # from before it, which `bastion audit verify` reports until `--reanchor` signs them.
    sa.Column("mac", sa.String(128), nullable=True),
    sa.UniqueConstraint("node_id", "seq", name="uq_audit_checkpoints_node_id_seq"),
)

change_feed = sa.Table(
    "change_feed",
    metadata,
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(64), nullable=False),
    sa.Column("message", sa.String(512), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, index=True),
)
"""Every change every node must hear of, written with the change itself (``storage/feed.py``)."""

settings_kv = sa.Table(
    "settings_kv",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", sa.JSON(), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)


sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    # SHA-256 of the session id the browser holds: the id itself is never stored (0006).
    sa.Column("id_digest", sa.String(64), nullable=False),
    # No foreign key: a deleted user's sessions are ended (and announced), not vanished.
    sa.Column("user_id", sa.String(ID), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("auth_time", UTCDateTime(), nullable=False),
    sa.Column("amr", _json(), nullable=False),
    sa.Column("acr", sa.String(255), nullable=True),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Column("end_reason", sa.String(32), nullable=True),
    sa.Column("user_agent", sa.String(256), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Index("ix_sessions_id_digest", "id_digest", unique=True),
    sa.Index("ix_sessions_user_id", "user_id"),
)
"""Browser sessions (``interaction/sessions.py``), found by the digest of the cookie's id."""

session_clients = sa.Table(
    "session_clients",
    metadata,
    # Deleting the session row or the client deletes the pair (0009).
    _cascading_reference("session_id", sa.String(ID), "sessions.id"),
    _cascading_reference("client_id", sa.String(255), "clients.client_id"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("session_id", "client_id", name="pk_session_clients"),
    sa.Index("ix_session_clients_client_id", "client_id"),
)
"""The clients a browser session signed into (an authorization code issued during it): who
gets a back-channel logout token when it ends."""

consents = sa.Table(
    "consents",
    metadata,
    sa.Column("id", sa.String(ID), primary_key=True),
    # Deleting the user or the client deletes what they consented to (0007).
    _cascading_reference("user_id", sa.String(ID), "users.id"),
    _cascading_reference("client_id", sa.String(255), "clients.client_id"),
    # The scope set, its distinct tokens sorted and joined by one space.
    sa.Column("scope", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint(
        "user_id", "client_id", "scope", name="uq_consents_user_id_client_id_scope"
    ),
    sa.Index("ix_consents_client_id", "client_id"),
)
"""What a user allowed a client (``interaction/consents.py``): one row per scope set."""


@dataclass(frozen=True, slots=True)
class SealedColumn:
    """A column holding a sealed secret, and how its seal context is built.

    The context (bound into the ciphertext as AAD by ``bastion.crypto``) is
    ``"<table>.<column>:<primary key>"``, so a sealed value cannot be moved to
    another row or column.
    """

    table: sa.Table
    primary_key: str
    column: str

    def context(self, primary_key_value: str) -> str:
        """The seal context string of this column in the row with this primary key."""
        return f"{self.table.name}.{self.column}:{primary_key_value}"


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(user_credentials, "id", "secret_sealed"),
    SealedColumn(signing_keys, "kid", "private_key_sealed"),
    SealedColumn(webhooks, "id", "secret_sealed"),
)


def seal_context(table: str, column: str, primary_key_value: str) -> str:
    """The seal context of a sealed column value; ``KeyError`` if the column is not registered."""
    for sealed in SEALED_COLUMNS:
        if sealed.table.name == table and sealed.column == column:
            return sealed.context(primary_key_value)
    raise KeyError(f"{table}.{column} is not a sealed column")


__all__ = [
    "SEALED_COLUMNS",
    "SealedColumn",
    "UTCDateTime",
    "api_keys",
    "audit_checkpoints",
    "audit_events",
    "authorization_codes",
    "change_feed",
    "client_secrets",
    "clients",
    "consents",
    "grants",
    "metadata",
    "refresh_tokens",
    "seal_context",
    "session_clients",
    "sessions",
    "settings_kv",
    "signing_keys",
    "user_credentials",
    "users",
    "webhooks",
]
