"""Audit hardening: authenticated checkpoints and indexes for the audit search filters.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Hand-written and portable (SQLite and PostgreSQL), like 0001.

- ``audit_checkpoints.mac``: the checkpoint's HMAC under a key derived from the
  master key (``bastion.audit.chain``). Rows written before this revision have
  none; ``bastion audit verify`` reports them as unauthenticated until
  ``bastion audit verify --reanchor`` signs them after a full verification.
- Indexes for ``bastion audit search`` (and the admin API's audit search) by
  key, client, request id and IP address, and for ``bastion keys … PREFIX``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_AUDIT_INDEXES = (
    ("ix_audit_events_key_id", "key_id"),
    ("ix_audit_events_client_id", "client_id"),
    ("ix_audit_events_request_id", "request_id"),
    ("ix_audit_events_ip", "ip"),
)


def upgrade() -> None:
    op.add_column("audit_checkpoints", sa.Column("mac", sa.String(128), nullable=True))
    for name, column in _AUDIT_INDEXES:
        op.create_index(name, "audit_events", [column])
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_prefix", table_name="api_keys")
    for name, _column in reversed(_AUDIT_INDEXES):
        op.drop_index(name, table_name="audit_events")
    with op.batch_alter_table("audit_checkpoints") as batch:
        batch.drop_column("mac")
