"""Consents: what a user allowed a client, one row per (user, client, scope set).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Hand-written and portable (SQLite and PostgreSQL), like 0001. ``scope`` is the
scope set in one canonical spelling (distinct tokens, sorted, one space between),
so the unique constraint keeps one row per set. Deleting the user or the client
deletes their consents (the foreign keys cascade); revoking one deletes the rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _cascade(column: str, referred: str) -> sa.ForeignKeyConstraint:
    table = referred.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column],
        [referred],
        name=f"fk_consents_{column}_{table}",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_consents"),
        _cascade("user_id", "users.id"),
        _cascade("client_id", "clients.client_id"),
        sa.UniqueConstraint(
            "user_id", "client_id", "scope", name="uq_consents_user_id_client_id_scope"
        ),
    )
    op.create_index("ix_consents_client_id", "consents", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_consents_client_id", table_name="consents")
    op.drop_table("consents")
