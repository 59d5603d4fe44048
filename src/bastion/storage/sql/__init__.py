"""The SQL implementation of bastion's durable storage (SQLite and PostgreSQL)."""

from __future__ import annotations

from bastion.storage.sql.database import Database
from bastion.storage.sql.repositories import record_changes
from bastion.storage.sql.schema import SEALED_COLUMNS, SealedColumn, metadata, seal_context

__all__ = [
    "SEALED_COLUMNS",
    "Database",
    "SealedColumn",
    "metadata",
    "record_changes",
    "seal_context",
]
