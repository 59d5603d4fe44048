"""Clients' post-logout redirect URIs (OpenID Connect RP-Initiated Logout 1.0 §3.1).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Hand-written and portable (SQLite and PostgreSQL), like 0001. A JSON array of the
exact URIs ``/oauth2/logout`` may send a browser to after signing it out; existing
clients get none (``[]``), so nothing redirects until a client registers one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added nullable, filled, then made NOT NULL: no server default to compare with
    # schema.py (PostgreSQL cannot compare JSON defaults).
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=True))
    op.execute("UPDATE clients SET post_logout_redirect_uris = '[]'")
    with op.batch_alter_table("clients") as batch:
        batch.alter_column("post_logout_redirect_uris", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("post_logout_redirect_uris")
