"""Fixtures of the SQL storage contract suite: every contract test runs on SQLite and PostgreSQL.

Migrating a fresh database per test costs ~0.7 s on PostgreSQL, so the contract
tests share one migrated database per backend and session: PostgreSQL tables are
truncated before each test, and each SQLite test gets a copy of a migrated file.
Tests of migrations themselves use the fresh ``sqlite_url`` / ``postgres_url``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bastion.storage import Client, Database, User


@pytest.fixture
def now() -> datetime:
    """A fixed aware UTC instant (microseconds kept: both backends must round-trip them)."""
    return datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def user(db: Database) -> User:
    """A stored user."""
    return await db.users.create(User(username="alice", email="alice@example.com"))


@pytest.fixture
async def client(db: Database) -> Client:
    """A stored confidential client."""
    return await db.clients.create(
        Client(
            client_id="app",
            name="App",
            redirect_uris=("https://app.example.com/cb",),
            grant_types=("authorization_code", "refresh_token"),
            scopes=("openid", "profile"),
        )
    )
