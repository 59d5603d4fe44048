"""bastion.storage: durable storage (SQL) and, alongside, shared ephemeral state.

Public pieces of the durable part:

- :class:`Database` — ``await Database.connect(url)`` on SQLite or PostgreSQL;
  repositories as attributes (``users``, ``clients``, ``grants``, ``codes``,
  ``refresh_tokens``, ``api_keys``, ``signing_keys``, ``webhooks``, ``audit``,
  ``settings``), ``ping()``, ``close()``, ``check_schema()``, ``rewrap_sealed()``.
- :func:`migrate`, :func:`current_revision`, :func:`pending_revisions`,
  :data:`HEAD_REVISION` — schema migrations (Alembic, programmatic).
- Records (``models``): frozen dataclasses such as :class:`User`, :class:`ApiKey`.
- Repository conventions (``repositories``) and :class:`AuditRepository`, the interface
  the audit chain is typed against.
- Outcomes (``outcomes``): :class:`CodeReplayError`, :class:`RefreshTokenReuseError` …
- Errors (``errors``): :class:`StorageError` and its subclasses.
"""

from __future__ import annotations

from bastion.storage.errors import (
    ConflictError,
    DatabaseUnavailableError,
    MigrationError,
    NotFoundError,
    StorageError,
)
from bastion.storage.migrations import (
    HEAD_REVISION,
    current_revision,
    migrate,
    pending_revisions,
    schema_is_current,
)
from bastion.storage.models import (
    ApiKey,
    AuditCheckpoint,
    AuditEvent,
    AuthorizationCode,
    Client,
    ClientSecret,
    Grant,
    Page,
    RefreshToken,
    SettingEntry,
    SigningKey,
    User,
    UserCredential,
    Webhook,
)
from bastion.storage.outcomes import (
    CodeReplayError,
    DatabaseConfigError,
    InvalidCursorError,
    RefreshTokenReuseError,
    RefreshTokenRevokedError,
)
from bastion.storage.repositories import AuditRepository
from bastion.storage.sql import Database

__all__ = [
    "HEAD_REVISION",
    "ApiKey",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditRepository",
    "AuthorizationCode",
    "Client",
    "ClientSecret",
    "CodeReplayError",
    "ConflictError",
    "Database",
    "DatabaseConfigError",
    "DatabaseUnavailableError",
    "Grant",
    "InvalidCursorError",
    "MigrationError",
    "NotFoundError",
    "Page",
    "RefreshToken",
    "RefreshTokenReuseError",
    "RefreshTokenRevokedError",
    "SettingEntry",
    "SigningKey",
    "StorageError",
    "User",
    "UserCredential",
    "Webhook",
    "current_revision",
    "migrate",
    "pending_revisions",
    "schema_is_current",
]
