"""Database URLs, connection settings and failure modes (real servers, real failures)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from _support import free_port
from bastion.storage import (
    DatabaseConfigError,
    DatabaseUnavailableError,
    MigrationError,
    User,
    migrate,
)
from bastion.storage.sql import Database
from bastion.storage.sql.engine import parse_database_url


@pytest.mark.parametrize(
    ("url", "driver", "dialect"),
    [
        ("sqlite:///var/bastion.db", "sqlite+aiosqlite", "sqlite"),
        ("sqlite+aiosqlite:////abs/bastion.db", "sqlite+aiosqlite", "sqlite"),
        ("postgresql://u@db/bastion", "postgresql+asyncpg", "postgresql"),
        ("postgres://u@db/bastion", "postgresql+asyncpg", "postgresql"),
        ("postgresql+asyncpg://u@db/bastion", "postgresql+asyncpg", "postgresql"),
    ],
)
def test_urls_map_to_async_drivers(url: str, driver: str, dialect: str) -> None:
    target = parse_database_url(url)
    assert target.url.drivername == driver
    assert target.dialect == dialect


def test_sslmode_is_translated_and_password_redacted() -> None:
    target = parse_database_url("postgresql://bastion:s3cret@db:5432/bastion?sslmode=require")
    assert dict(target.url.query) == {"ssl": "require"}
    assert target.redacted == "postgresql://bastion:***@db:5432/bastion?sslmode=require"
    assert "s3cret" not in target.redacted


def test_unsupported_scheme() -> None:
    with pytest.raises(DatabaseConfigError) as info:
        parse_database_url("mysql://u:pw@db/bastion")
    assert info.value.code == "database_config"
    assert info.value.detail == (
        "unsupported database URL scheme 'mysql' in mysql://u:***@db/bastion; "
        "use sqlite:///path or postgresql://user@host/dbname"
    )


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(DatabaseConfigError, match="in-memory SQLite"):
        parse_database_url("sqlite://")


async def test_postgres_closed_port_is_unavailable_with_redacted_url() -> None:
    port = free_port()  # this worker's: nothing listens on it
    url = f"postgresql://bastion:hunter2secret@127.0.0.1:{port}/bastion"
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database.connect(url)
    error = info.value
    assert error.code == "database_unavailable"
    assert error.status == 503
    assert error.detail.startswith(
        f"database postgresql://bastion:***@127.0.0.1:{port}/bastion is unavailable: "
    )
    assert "hunter2secret" not in str(error)
    assert "\n" not in error.detail
    with pytest.raises(DatabaseUnavailableError, match="is unavailable"):
        await migrate(url)


async def test_postgres_missing_database_is_unavailable(postgres_server_url: str) -> None:
    url = postgres_server_url.rsplit("/", 1)[0] + "/bastion_does_not_exist_x"
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database.connect(url)
    assert info.value.detail.endswith('database "bastion_does_not_exist_x" does not exist')


async def test_postgres_that_never_answers_times_out() -> None:
    # Accepts TCP connections and says nothing: a hung server or a black-holed route.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            await Database.connect(f"postgresql://u@127.0.0.1:{port}/x")
        assert info.value.detail == (
            f"database postgresql://u@127.0.0.1:{port}/x is unavailable: no answer within 2s"
        )
    finally:
        server.close()


# The server closing pooled connections under asyncpg leaves transports for the GC to
# reap (asyncpg/SQLAlchemy behaviour, not bastion's): don't let that fail -W error runs.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_operations_after_the_database_goes_away(postgres_url: str) -> None:
    await migrate(postgres_url)
    db = await Database.connect(postgres_url)
    name = postgres_url.rsplit("/", 1)[1]
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    try:
        await db.users.create(User(username="before"))
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        with pytest.raises(DatabaseUnavailableError) as info:
            await db.users.find_by_username("before")
        assert f'database "{name}" does not exist' in info.value.detail
        with pytest.raises(DatabaseUnavailableError):
            await db.ping()
    finally:
        await db.close()


async def test_recovers_after_connections_are_killed(postgres_url: str) -> None:
    await migrate(postgres_url)
    db = await Database.connect(postgres_url)
    try:
        await db.users.create(User(username="alice"))
        name = postgres_url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(postgres_url)
        try:
            # What a database restart does to every pooled connection.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
        finally:
            await conn.close()
        # pool_pre_ping replaces the dead connections: the next request just works.
        assert await db.users.find_by_username("alice") is not None
    finally:
        await db.close()


async def test_sqlite_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bastion.db"
    db = await Database.connect(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()
        assert db.dialect == "sqlite"
    finally:
        await db.close()


async def test_sqlite_parent_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseConfigError) as info:
        await Database.connect(f"sqlite:///{blocker}/sub/bastion.db")
    assert info.value.detail.startswith(
        f"cannot create the directory {blocker}/sub of SQLite database {blocker}/sub/bastion.db: "
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
async def test_sqlite_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(DatabaseConfigError) as info:
            await Database.connect(f"sqlite:///{locked}/bastion.db")
        assert info.value.detail == (
            f"cannot use SQLite database {locked}/bastion.db: directory {locked} is not writable"
        )
    finally:
        locked.chmod(0o700)


async def test_sqlite_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    # A directory where the database file should be: SQLite cannot open it, even as root.
    (tmp_path / "bastion.db").mkdir()
    with pytest.raises(DatabaseUnavailableError) as info:
        await Database.connect(f"sqlite:///{tmp_path}/bastion.db")
    assert info.value.detail == (
        f"database sqlite:///{tmp_path}/bastion.db is unavailable: unable to open database file"
    )


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(sqlite_url)
    yield db
    await db.close()


async def test_sqlite_connection_settings(sqlite_db: Database) -> None:
    async with sqlite_db.engine.connect() as conn:
        values = {
            pragma: (await conn.exec_driver_sql(f"PRAGMA {pragma}")).scalar()
            for pragma in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert values == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 5000,
        "synchronous": 1,
    }


async def test_unmigrated_database(sqlite_db: Database) -> None:
    with pytest.raises(MigrationError) as info:
        await sqlite_db.check_schema()
    assert info.value.detail == (
        "database schema is at revision none (empty database), this bastion needs 0010 "
        "— run `bastion migrate`"
    )
    with pytest.raises(MigrationError) as query_info:
        await sqlite_db.users.find_by_username("x")
    assert query_info.value.detail.endswith("— run `bastion migrate`")
    assert "has no bastion schema" in query_info.value.detail


async def test_unmigrated_postgres_query(postgres_url: str) -> None:
    db = await Database.connect(postgres_url)
    try:
        with pytest.raises(MigrationError, match="has no bastion schema"):
            await db.users.get("x")
    finally:
        await db.close()


async def test_check_schema_passes_when_migrated(sqlite_url: str) -> None:
    await migrate(sqlite_url)
    db = await Database.connect(sqlite_url)
    try:
        await db.check_schema()
        await db.ping()
    finally:
        await db.close()


async def test_redacted_url_and_dialect(postgres_url: str) -> None:
    db = await Database.connect(postgres_url)
    try:
        assert db.dialect == "postgresql"
        assert db.redacted_url == postgres_url
        async with db.transaction() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
    finally:
        await db.close()
