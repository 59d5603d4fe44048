"""Fixtures of the SQL storage contract suite: every contract test runs on SQLite and PostgreSQL.

Migrating a fresh database per test costs ~0.7 s on PostgreSQL, so the contract
tests share one migrated database per backend and session: PostgreSQL tables are
truncated before each test, and each SQLite test gets a copy of a migrated file.
Tests of migrations themselves use the fresh ``sqlite_url`` / ``postgres_url``.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from bastion.storage import Client, Database, User, migrate
from bastion.storage.sql.schema import metadata


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head, shared by the session's contract tests."""
    parts = urlsplit(postgres_server_url.replace("postgresql+asyncpg://", "postgresql://"))
    admin_dsn = urlunsplit(parts)
    name = f"bastion_c_{secrets.token_hex(6)}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    url = urlunsplit(parts._replace(path="/" + name))
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied by each contract test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "bastion.db"
    asyncio.run(migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database migrated to head, on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("migrated_sqlite_file")
        path = tmp_path / "bastion.db"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("migrated_postgres_url")
    # DELETE, children first: much cheaper than TRUNCATE on tiny tables.
    statements = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(metadata.sorted_tables))
    asyncio.run(_admin(url, statements))
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A connected Database on an empty, migrated database of each backend."""
    database = await Database.connect(db_url)
    try:
        yield database
    finally:
        await database.close()


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
