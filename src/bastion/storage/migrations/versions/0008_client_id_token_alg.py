"""Clients: the algorithm their ID tokens are signed with.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

Hand-written and portable (SQLite and PostgreSQL), like 0001.

``id_token_signed_response_alg`` (OpenID Connect Dynamic Client Registration §2): the
JWS algorithm of the client's ID tokens, one of ``signing_keys.id_token_algorithms``.
``NULL`` — every row written before this revision — means the server's default, the
first of those algorithms (ES256 unless configured otherwise).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "clients", sa.Column("id_token_signed_response_alg", sa.String(32), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("id_token_signed_response_alg")
