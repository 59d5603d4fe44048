"""The change feed: one row per change every node must hear of.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Hand-written and portable (SQLite and PostgreSQL), like 0001. Rows are
written in the same transaction as the change they announce and read by every
node in id order (``bastion.storage.feed``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "change_feed",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("message", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_feed"),
    )
    op.create_index("ix_change_feed_created_at", "change_feed", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_change_feed_created_at", table_name="change_feed")
    op.drop_table("change_feed")
