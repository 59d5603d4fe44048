"""One-round-trip hot-path reads (``Database.read_rows``) on SQLite and PostgreSQL.

The fast path must return exactly what the transactional path returns, send ONE
statement per lookup with no BEGIN/COMMIT/ROLLBACK reaching the driver, recover
when its pooled connections were killed, and translate errors like the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from bastion.storage import Client, Database
from bastion.storage.errors import DatabaseUnavailableError, MigrationError, NotFoundError
from bastion.storage.models import ApiKey, ClientSecret
from bastion.storage.sql import schema as s
from bastion.storage.sql.engine import create_engine, create_read_engine, parse_database_url

NOW = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _key(n: int) -> ApiKey:
    return ApiKey(
        digest=_digest(f"key-{n}"),
        prefix=f"bk_{n:04d}",
        name=f"key {n}",
        owner_type="user",
        owner_id="u1",
        scopes=("read", "write"),
        routes=("/api/*",),
        expires_at=NOW + timedelta(days=30),
        rate_limits=({"per": "key", "rate": "100/minute"},),
        ip_allow=("10.0.0.0/8",),
        metadata={"team": "core", "n": n},
        created_at=NOW,
        updated_at=NOW,
    )


class _Probe:
    """Counts what reaches the driver on an engine: statements and real BEGIN/COMMIT/ROLLBACK."""

    def __init__(self, db: Database) -> None:
        self.statements: list[str] = []
        self.transaction_calls: list[str] = []
        self._engine = db.read_engine.sync_engine
        self._dialect = self._engine.dialect
        event.listen(self._engine, "before_cursor_execute", self._on_execute)
        for name in ("do_begin", "do_commit", "do_rollback"):
            setattr(self._dialect, name, self._counting(name, getattr(self._dialect, name)))

    def _on_execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def _counting(self, name: str, original: Any) -> Any:
        def wrapper(dbapi_connection: Any) -> Any:
            # DefaultDialect.do_begin is a no-op on every DBAPI; a rollback skipped because
            # the connection is in autocommit mode never reaches the driver either.
            skipped = name == "do_begin" or (
                name == "do_rollback" and self._dialect.detect_autocommit_setting(dbapi_connection)
            )
            if not skipped:
                self.transaction_calls.append(name)
            return original(dbapi_connection)

        return wrapper

    def reset(self) -> None:
        self.statements.clear()
        self.transaction_calls.clear()

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._on_execute)
        for name in ("do_begin", "do_commit", "do_rollback"):
            delattr(self._dialect, name)


@pytest.fixture
def probe(db: Database) -> Iterator[_Probe]:
    counting = _Probe(db)
    try:
        yield counting
    finally:
        counting.close()


async def test_fast_lookup_returns_the_same_records_as_the_transactional_path(
    db: Database,
) -> None:
    keys = [await db.api_keys.create(_key(n)) for n in range(3)]
    for key in keys:
        fast = await db.api_keys.find_by_digest(key.digest)
        slow = await db.api_keys._get_where(s.api_keys.c.digest == key.digest)
        assert fast == slow == key
    assert await db.api_keys.find_by_digest(_digest("unknown")) is None


async def test_fast_client_reads_return_the_same_records(db: Database) -> None:
    client = await db.clients.create(
        Client(client_id="app", name="App", redirect_uris=("https://app.example.com/cb",))
    )
    secrets = [
        await db.clients.add_secret(
            ClientSecret(client_id="app", digest=_digest(f"s{n}"), prefix=f"p{n}", created_at=NOW)
        )
        for n in range(3)
    ]
    assert await db.clients.get("app") == await db.clients._get_where(
        s.clients.c.client_id == "app"
    )
    assert await db.clients.get("app") == client
    assert await db.clients.list_secrets("app") == tuple(sorted(secrets, key=lambda x: x.id))
    assert await db.clients.list_secrets("app") == await db.clients._secrets._all(
        s.client_secrets.c.client_id == "app", order_by=s.client_secrets.c.id
    )
    assert await db.clients.list_secrets("nobody") == ()
    with pytest.raises(NotFoundError) as info:
        await db.clients.get("nobody")
    assert (info.value.code, str(info.value)) == ("not_found", "client 'nobody' does not exist")


async def test_each_fast_lookup_is_exactly_one_statement(db: Database, probe: _Probe) -> None:
    key = await db.api_keys.create(_key(1))
    await db.api_keys.find_by_digest(key.digest)  # first use opens (and sets up) a connection
    for _ in range(5):
        probe.reset()
        assert await db.api_keys.find_by_digest(key.digest) == key
        assert len(probe.statements) == 1
        assert probe.statements[0].lstrip().upper().startswith("SELECT")
        assert probe.transaction_calls == []
    probe.reset()
    assert await db.api_keys.find_by_digest(_digest("unknown")) is None
    assert (len(probe.statements), probe.transaction_calls) == (1, [])


async def _kill_pooled_connections(db: Database) -> None:
    if db.dialect == "postgresql":
        url = db.target.url.set(drivername="postgresql").render_as_string(hide_password=False)
        admin = await asyncpg.connect(url)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
    else:
        # No server to kill: close the pooled driver connection behind SQLAlchemy's back.
        async with db.read_engine.connect() as conn:
            raw = await conn.get_raw_connection()
            await raw.driver_connection.close()  # type: ignore[union-attr]


async def test_fast_lookup_recovers_after_its_connection_is_killed(
    db: Database, probe: _Probe
) -> None:
    key = await db.api_keys.create(_key(1))
    assert await db.api_keys.find_by_digest(key.digest) == key
    await _kill_pooled_connections(db)
    invalidated: list[BaseException | None] = []
    pool = db.read_engine.sync_engine.pool
    record = lambda _conn, _rec, exc: invalidated.append(exc)  # noqa: E731
    event.listen(pool, "invalidate", record)
    try:
        assert await db.api_keys.find_by_digest(key.digest) == key
    finally:
        event.remove(pool, "invalidate", record)
    # The dead connection was found broken once and the lookup retried on a fresh one.
    assert len(invalidated) == 1
    probe.reset()
    assert await db.api_keys.find_by_digest(key.digest) == key
    assert len(probe.statements) == 1
    # The transactional path (pre-ping) recovers too.
    assert await db.api_keys.get(key.id) == key


async def test_fast_lookup_on_unreachable_postgres_is_database_unavailable() -> None:
    target = parse_database_url("postgresql://bastion:s3cret@127.0.0.1:1/nowhere")
    db = Database(create_engine(target), target, read_engine=create_read_engine(target))
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            await db.api_keys.find_by_digest(_digest("x"))
    finally:
        await db.close()
    assert info.value.code == "database_unavailable"
    message = str(info.value)
    assert message.startswith(
        "database postgresql://bastion:***@127.0.0.1:1/nowhere is unavailable: "
    )
    assert "s3cret" not in message


async def test_fast_lookup_without_schema_is_a_migration_error_and_not_retried(
    sqlite_url: str,
) -> None:
    db = await Database.connect(sqlite_url)
    statements: list[str] = []
    event.listen(
        db.read_engine.sync_engine,
        "before_cursor_execute",
        lambda _c, _cur, statement, *_a: statements.append(statement),
    )
    try:
        with pytest.raises(MigrationError) as info:
            await db.api_keys.find_by_digest(_digest("x"))
    finally:
        await db.close()
    assert str(info.value).endswith("— run `bastion migrate`")
    assert "no such table: api_keys" in str(info.value)
    assert len(statements) == 1


async def test_read_rows_runs_in_autocommit(db: Database) -> None:
    # Each statement is its own transaction: nothing is left open on the pooled connection.
    rows = await db.read_rows(sa.select(sa.literal(1).label("one")))
    assert [dict(row) for row in rows] == [{"one": 1}]
    async with db.read_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is not None
        assert db.read_engine.sync_engine.dialect.detect_autocommit_setting(raw.dbapi_connection)
