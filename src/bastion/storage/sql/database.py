"""The SQL database: one engine, its repositories, health check and sealed-column re-wrap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from bastion.storage.errors import MigrationError
from bastion.storage.sql import repositories as r
from bastion.storage.sql.aio import AsyncConnection, AsyncEngine
from bastion.storage.sql.engine import (
    DatabaseTarget,
    Dialect,
    ErrorContext,
    create_engine,
    create_read_engine,
    parse_database_url,
    ping_engine,
    prepare_sqlite_path,
    translate_error,
)
from bastion.storage.sql.revision import HEAD_REVISION, current_revision_of_engine
from bastion.storage.sql.schema import SEALED_COLUMNS

PING_TIMEOUT = 2.0


class Database:
    """bastion's durable storage on SQLite or PostgreSQL.

    Open it with :meth:`connect` (which does not migrate: run
    :func:`bastion.storage.migrate` first, and :meth:`check_schema` to refuse
    an out-of-date schema). The repositories are attributes: ``users``,
    ``clients``, ``grants``, ``codes``, ``refresh_tokens``, ``api_keys``,
    ``signing_keys``, ``webhooks``, ``audit``, ``settings``, ``change_feed``, ``sessions``,
    ``consents``.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        target: DatabaseTarget,
        *,
        read_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # Autocommit engine for one-round-trip hot-path reads (:meth:`read_rows`); it opens
        # connections only when first used.
        self.read_engine = read_engine if read_engine is not None else create_read_engine(target)
        self.target = target
        self.dialect: Dialect = target.dialect
        # SQLite has one writer at a time: queue this process's writers here instead of
        # letting them spin in the busy handler while holding pooled connections.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect == "sqlite" else None
        self.users = r.SqlUserRepository(self)
        self.clients = r.SqlClientRepository(self)
        self.grants = r.SqlGrantRepository(self)
        self.codes = r.SqlAuthorizationCodeRepository(self)
        self.refresh_tokens = r.SqlRefreshTokenRepository(self)
        self.api_keys = r.SqlApiKeyRepository(self)
        self.signing_keys = r.SqlSigningKeyRepository(self)
        self.webhooks = r.SqlWebhookRepository(self)
        self.audit = r.SqlAuditRepository(self)
        self.settings = r.SqlSettingsRepository(self)
        self.change_feed = r.SqlChangeFeed(self)
        self.sessions = r.SqlSessionRepository(self)
        self.consents = r.SqlConsentRepository(self)

    @classmethod
    async def connect(cls, url: str, *, pool_size: int = 10) -> Database:
        """Open the database at ``url`` and check that it answers.

        Raises :class:`~bastion.storage.outcomes.DatabaseConfigError` for an
        unusable URL or SQLite location, and
        :class:`~bastion.storage.errors.DatabaseUnavailableError` (one line,
        password redacted) when the database cannot be reached.
        """
        target = parse_database_url(url)
        if target.dialect == "sqlite":
            prepare_sqlite_path(target)
        engine = create_engine(target, pool_size=pool_size)
        database = cls(engine, target, read_engine=create_read_engine(target, pool_size=pool_size))
        try:
            await database.ping()
        except BaseException:
            await database.close()
            raise
        return database

    @property
    def redacted_url(self) -> str:
        """The database URL with any password replaced by ``***``."""
        return self.target.redacted

    async def ping(self) -> None:
        """Check the database answers within ~2 s; raises DatabaseUnavailableError."""
        await ping_engine(self.engine, self.target, PING_TIMEOUT)

    async def close(self) -> None:
        """Close every pooled connection."""
        try:
            await self.engine.dispose()
        finally:
            await self.read_engine.dispose()

    async def check_schema(self) -> None:
        """Raise MigrationError unless the schema is at the revision this bastion needs."""
        current = await current_revision_of_engine(self.engine, self.target)
        if current != HEAD_REVISION:
            raise MigrationError(
                f"database schema is at revision {current or 'none (empty database)'}, "
                f"this bastion needs {HEAD_REVISION} — run `bastion migrate`"
            )

    @asynccontextmanager
    async def transaction(
        self,
        *,
        write: bool = False,
        conflict: str | None = None,
        missing_reference: str | None = None,
    ) -> AsyncIterator[AsyncConnection]:
        """A connection inside one transaction, committed on success.

        Every driver exception raised inside is translated here (the one place):
        unique violation → ConflictError(``conflict``), foreign-key violation →
        NotFoundError(``missing_reference``), connection trouble →
        DatabaseUnavailableError. ``write=True`` takes SQLite's write lock at BEGIN.
        """
        context = ErrorContext(conflict=conflict, missing_reference=missing_reference)
        with self._translated_errors(context):
            if write and self._write_lock is not None:
                async with self._write_lock, self._begin(write=True) as conn:
                    yield conn
            else:
                async with self._begin(write=write) as conn:
                    yield conn

    async def read_rows(
        self, statement: sa.Executable, params: Mapping[str, Any] | None = None
    ) -> Sequence[RowMapping]:
        """Run one read-only statement in ONE round trip and return its rows.

        For hot-path lookups: the statement runs on the autocommit read engine (no
        BEGIN/COMMIT/ROLLBACK, no pre-ping), so it must not write and needs no
        transaction. A pooled connection found broken (the database restarted or
        killed it) is retried once on a fresh connection. Errors are translated like
        :meth:`transaction`'s: connection trouble → DatabaseUnavailableError.
        ``params`` fills the statement's bind parameters (build a hot statement once).
        """
        with self._translated_errors(ErrorContext()):
            for attempt in (1, 2):
                async with self.read_engine.connect() as conn:
                    try:
                        return (await conn.execute(statement, params)).mappings().all()
                    except sa.exc.DBAPIError as exc:
                        # Without pre-ping a connection that died idle in the pool shows up
                        # here; SQLAlchemy has invalidated it and the pool, so retry once.
                        if attempt == 2 or not exc.connection_invalidated:
                            raise
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _translated_errors(self, context: ErrorContext) -> Iterator[None]:
        # The one place driver exceptions raised by storage code become bastion errors.
        try:
            yield
        except sa.exc.StatementError as exc:
            if isinstance(exc.orig, ValueError | TypeError) and not isinstance(
                exc, sa.exc.DBAPIError
            ):
                # A value the types refuse (e.g. a naive datetime): a caller bug, shown as such.
                raise exc.orig from exc
            translated = translate_error(exc, self.target, context)
            if translated is None:
                raise
            raise translated from exc
        except Exception as exc:
            translated = translate_error(exc, self.target, context)
            if translated is None:
                raise
            raise translated from exc

    @asynccontextmanager
    async def _begin(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            if write:
                await conn.execution_options(bastion_write=True)
            async with conn.begin():
                yield conn

    async def rewrap_sealed(self, rewrap: Callable[[str], str]) -> int:
        """Re-wrap every sealed column value in ONE transaction; returns how many changed.

        ``rewrap`` (``bastion.crypto``'s envelope re-wrap) maps a sealed string
        to its re-wrapped form; values it returns unchanged are not written.
        Anything it raises aborts the whole re-wrap and nothing is written.
        """
        changed = 0
        async with self.transaction(write=True) as conn:
            for sealed in SEALED_COLUMNS:
                table = sealed.table
                pk = table.c[sealed.primary_key]
                column = table.c[sealed.column]
                rows = (await conn.execute(sa.select(pk, column).where(column.is_not(None)))).all()
                for key, value in rows:
                    new_value = rewrap(value)
                    if new_value != value:
                        await conn.execute(
                            sa.update(table).where(pk == key).values({sealed.column: new_value})
                        )
                        changed += 1
        return changed


__all__ = ["Database"]
