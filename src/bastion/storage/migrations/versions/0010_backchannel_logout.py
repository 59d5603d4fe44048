"""Back-channel logout: the clients' logout URIs and the clients each session signed into.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

Hand-written and portable (SQLite and PostgreSQL), like 0001. OpenID Connect Back-Channel
Logout 1.0 §2.2: ``clients.backchannel_logout_uri`` (none for existing clients) and
``backchannel_logout_session_required`` (false). ``session_clients`` remembers which
clients obtained an authorization code during a browser session, so that its end reaches
them; deleting the session row or the client deletes the pair.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _cascade(column: str, referred: str) -> sa.ForeignKeyConstraint:
    table = referred.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column], [referred], name=f"fk_session_clients_{column}_{table}", ondelete="CASCADE"
    )


def upgrade() -> None:
    # Added nullable, filled, then made NOT NULL: no server default to compare with schema.py.
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("backchannel_logout_uri", sa.String(2048), nullable=True))
        batch.add_column(
            sa.Column("backchannel_logout_session_required", sa.Boolean(), nullable=True)
        )
    op.execute(
        sa.text("UPDATE clients SET backchannel_logout_session_required = :no").bindparams(no=False)
    )
    with op.batch_alter_table("clients") as batch:
        batch.alter_column(
            "backchannel_logout_session_required", existing_type=sa.Boolean(), nullable=False
        )
    op.create_table(
        "session_clients",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "client_id", name="pk_session_clients"),
        _cascade("session_id", "sessions.id"),
        _cascade("client_id", "clients.client_id"),
    )
    op.create_index("ix_session_clients_client_id", "session_clients", ["client_id"])


def downgrade() -> None:
    op.drop_index("ix_session_clients_client_id", table_name="session_clients")
    op.drop_table("session_clients")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("backchannel_logout_session_required")
        batch.drop_column("backchannel_logout_uri")
