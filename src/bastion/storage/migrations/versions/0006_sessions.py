"""Browser sessions: one row per login, found by the digest of the cookie's session id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Hand-written and portable (SQLite and PostgreSQL), like 0001. The session id
the browser holds is never stored, only its SHA-256 (``id_digest``); ``id`` is
the record's own, non-secret id (the account page's "sign out" names it).
``user_id`` has no foreign key: deleting a user ends their sessions (audited and
announced on the change feed) instead of deleting the rows under them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("id_digest", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auth_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amr", sa.JSON(none_as_null=True), nullable=False),
        sa.Column("acr", sa.String(255), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("user_agent", sa.String(256), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_id_digest", "sessions", ["id_digest"], unique=True)
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_sessions_user_id", table_name="sessions")
    op.drop_index("ix_sessions_id_digest", table_name="sessions")
    op.drop_table("sessions")
