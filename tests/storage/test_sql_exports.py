"""The public surface of bastion.storage's durable part, pinned."""

from __future__ import annotations

import dataclasses
import typing

import bastion.storage
from bastion.storage import models, repositories

DURABLE_EXPORTS = {
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
}


def test_durable_exports() -> None:
    # Shared-state exports live alongside; this pins only the durable part.
    assert set(bastion.storage.__all__) >= DURABLE_EXPORTS
    for name in DURABLE_EXPORTS:
        assert getattr(bastion.storage, name) is not None


def test_records_are_frozen_slotted_dataclasses() -> None:
    for name in models.__all__:
        obj = getattr(models, name)
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            params = obj.__dataclass_params__  # type: ignore[attr-defined]
            assert params.frozen, name
            assert hasattr(obj, "__slots__"), name


def test_repository_interfaces_are_protocols() -> None:
    for name in repositories.__all__:
        assert typing.Protocol in getattr(repositories, name).__mro__, name


def test_new_ids_sort_in_creation_order() -> None:
    ids = [models.new_id() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_username_normalization() -> None:
    assert models.normalize_username("Alice") == "alice"
    assert models.normalize_username("\uff21lice") == "alice"  # full-width A
    assert models.normalize_username("STRASSE") == models.normalize_username("straße")
