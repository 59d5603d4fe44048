"""Audit checkpoints: where retention pruning cut each node's hash chain.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27

Hand-written and portable (SQLite and PostgreSQL), like 0001.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pruned", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_checkpoints"),
        sa.UniqueConstraint("node_id", "seq", name="uq_audit_checkpoints_node_id_seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_checkpoints")
