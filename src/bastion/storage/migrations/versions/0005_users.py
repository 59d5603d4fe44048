"""Users: when each password was last set.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Hand-written and portable (SQLite and PostgreSQL), like 0001.

The ``users`` table itself (id, username with its case-insensitive lookup key
``username_normalized`` under a unique index, email, password hash, disabled
flag, roles, created/updated) is 0001's; ``bastion users`` (issue 16) adds
``password_changed_at``: set whenever a password is set or reset, so that the
session and refresh-token work can end what was issued before it. Rows written
before this revision have none (no user had a password yet).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
