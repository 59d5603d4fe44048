"""Database URLs, async engines, and the ONE place driver exceptions become bastion errors.

Accepted URLs: ``sqlite:///relative/or/absolute/path.db`` (and
``sqlite+aiosqlite://…``), ``postgresql://…``, ``postgres://…`` and
``postgresql+asyncpg://…``. SQLite runs in WAL mode with foreign keys on, a
5 s busy timeout and ``synchronous=NORMAL``; PostgreSQL goes through asyncpg.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from bastion.errors import BastionError
from bastion.storage.errors import (
    ConflictError,
    DatabaseUnavailableError,
    MigrationError,
    NotFoundError,
    StorageError,
)
from bastion.storage.outcomes import DatabaseConfigError
from bastion.storage.sql.aio import AsyncEngine, create_async_engine

Dialect = Literal["sqlite", "postgresql"]

CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a new PostgreSQL connection before calling the database unavailable."""

SQLITE_BUSY_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """A parsed database URL: the SQLAlchemy URL to use and the form safe to show."""

    url: URL
    dialect: Dialect
    redacted: str
    password: str | None
    sqlite_path: Path | None = None


def parse_database_url(raw: str) -> DatabaseTarget:
    """Parse a configured database URL and map it to its async driver.

    Raises :class:`DatabaseConfigError` for a malformed URL, an unsupported
    scheme or an in-memory SQLite database (each connection would get its own).
    """
    try:
        url = make_url(raw.strip())
    except Exception as exc:  # SQLAlchemy raises ArgumentError / ValueError variants
        raise DatabaseConfigError(
            "the database URL is malformed; expected sqlite:///path/to/bastion.db "
            "or postgresql://user@host/dbname"
        ) from exc
    password = url.password if isinstance(url.password, str) else None
    redacted = url.render_as_string(hide_password=True)
    scheme = url.drivername
    if scheme in {"sqlite", "sqlite+aiosqlite"}:
        database = url.database or ""
        if database in {"", ":memory:"} or database.startswith("file::memory:"):
            raise DatabaseConfigError(
                f"in-memory SQLite ({redacted}) is not supported; "
                "give a file path, e.g. sqlite:///.bastion/bastion.db"
            )
        path = Path(database).expanduser()
        return DatabaseTarget(
            url=url.set(drivername="sqlite+aiosqlite", database=str(path)),
            dialect="sqlite",
            redacted=redacted,
            password=None,
            sqlite_path=path,
        )
    if scheme in {"postgresql", "postgres", "postgresql+asyncpg"}:
        query = dict(url.query)
        if "sslmode" in query:
            # libpq spelling → asyncpg's; users copy libpq URLs.
            query["ssl"] = query.pop("sslmode")
        return DatabaseTarget(
            url=url.set(drivername="postgresql+asyncpg", query=query),
            dialect="postgresql",
            redacted=redacted,
            password=password,
        )
    raise DatabaseConfigError(
        f"unsupported database URL scheme {scheme!r} in {redacted}; "
        "use sqlite:///path or postgresql://user@host/dbname"
    )


def prepare_sqlite_path(target: DatabaseTarget) -> None:
    """Create the SQLite file's directory (0700) and the empty file (0600) if missing.

    The database holds key digests, sealed secrets and the audit log: it is
    created readable by its owner only, and SQLite gives its ``-wal`` and
    ``-shm`` files the database file's mode. Existing files and directories are
    left as they are (``bastion doctor`` reports loose modes). Raises
    :class:`DatabaseConfigError` naming the path when the directory cannot be
    created or written.
    """
    path = target.sqlite_path
    if path is None:
        return
    directory = path.parent if str(path.parent) else Path()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseConfigError(
            f"cannot create the directory {directory} of SQLite database {path}: "
            f"{exc.strerror or exc}"
        ) from None
    if not directory.is_dir():
        raise DatabaseConfigError(
            f"cannot use SQLite database {path}: {directory} is not a directory"
        )
    # SQLite needs to create the -wal and -shm files next to the database.
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DatabaseConfigError(
            f"cannot use SQLite database {path}: directory {directory} is not writable"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseConfigError(f"cannot use SQLite database {path}: the file is not writable")
    _create_private(path)


def _create_private(path: Path) -> None:
    # An empty file is a valid new SQLite database; creating it here (O_EXCL, 0600)
    # instead of letting SQLite create it with 0644 keeps it private from the start.
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except FileExistsError:
        return
    except OSError as exc:
        raise DatabaseConfigError(
            f"cannot create SQLite database {path}: {exc.strerror or exc}"
        ) from None
    os.close(fd)


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def create_engine(
    target: DatabaseTarget, *, pool_size: int = 10, null_pool: bool = False
) -> AsyncEngine:
    """An async engine for the target with bastion's connection settings.

    Pre-ping is on, so connections broken while the database was away are
    replaced and requests recover when it returns.
    """
    kwargs: dict[str, Any] = {}
    if null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return _engine(target, kwargs, begin=True)


def create_read_engine(target: DatabaseTarget, *, pool_size: int = 10) -> AsyncEngine:
    """An autocommit engine for single-statement reads: one round trip per statement.

    Its connections never BEGIN, COMMIT or ROLLBACK (each statement is its own
    transaction, so a connection is always clean when it goes back to the pool) and
    are not pinged on checkout. A connection found broken is invalidated with the
    whole pool, and :meth:`bastion.storage.sql.database.Database.read_rows` retries
    once on a fresh one, so reads recover when a restarted database returns.
    """
    kwargs: dict[str, Any] = {
        "isolation_level": "AUTOCOMMIT",
        "skip_autocommit_rollback": True,
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_pre_ping": False,
        # Safe only because every connection of this engine is in autocommit mode.
        "pool_reset_on_return": None,
    }
    return _engine(target, kwargs, begin=False)


def _engine(target: DatabaseTarget, pool_kwargs: dict[str, Any], *, begin: bool) -> AsyncEngine:
    """The engine of both factories: ``pool_kwargs`` plus what every bastion engine has
    (orjson for JSON columns, the PostgreSQL connect settings, the SQLite hooks)."""
    kwargs: dict[str, Any] = {
        "json_serializer": _json_serializer,
        "json_deserializer": orjson.loads,
        **pool_kwargs,
    }
    if target.dialect == "postgresql":
        kwargs["connect_args"] = {
            "timeout": CONNECT_TIMEOUT,
            "server_settings": {"application_name": "bastion"},
        }
    engine = create_async_engine(target.url, **kwargs)
    if target.dialect == "sqlite":
        _install_sqlite_hooks(engine, begin=begin)
    return engine


def _install_sqlite_hooks(engine: AsyncEngine, *, begin: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Driver-level autocommit: SQLAlchemy's "begin" hook below emits BEGIN itself,
        # which makes DDL transactional and lets writers take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    if not begin:
        return

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        # A write transaction takes the write lock at BEGIN (waiting up to busy_timeout).
        # A deferred transaction that reads and then writes can fail at once with
        # SQLITE_BUSY under WAL when another writer committed in between.
        if conn.get_execution_options().get("bastion_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


_CLASS_PREFIX = re.compile(r"^<class '[\w.]+'>:\s*")


def _one_line(exc: BaseException, password: str | None) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = _CLASS_PREFIX.sub("", text.splitlines()[0]).strip()
    if password:
        line = line.replace(password, "***")
    return line


def _sqlstate(exc: BaseException) -> str | None:
    for candidate in (exc, exc.__cause__, getattr(exc, "__context__", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


# SQLSTATE classes/codes meaning "the database is not reachable or not serving us right now":
# connection exceptions, authorization, missing database, too many connections / out of
# resources, shutdown in progress, deadlock / serialization failure, lock or statement timeout.
_PG_TRANSIENT_CLASSES = ("08", "28", "53", "57P", "40")
_PG_TRANSIENT_CODES = frozenset({"3D000", "55P03", "57014"})
# SQLite result codes of the same nature (busy/locked, cannot open, I/O, full, read-only …).
_SQLITE_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_NOTADB",
    "SQLITE_CORRUPT",
    "SQLITE_PERM",
    "SQLITE_PROTOCOL",
)
_SQLITE_TRANSIENT_TEXT = ("unable to open", "database is locked", "disk i/o error", "readonly")


def _is_transient(exc: sa.exc.DBAPIError, orig: BaseException) -> bool:
    if isinstance(orig, OSError) or isinstance(orig.__cause__, OSError | ConnectionError):
        return True
    state = _sqlstate(orig)
    if state is not None:
        return state in _PG_TRANSIENT_CODES or state.startswith(_PG_TRANSIENT_CLASSES)
    errorname = getattr(orig, "sqlite_errorname", None)
    if isinstance(errorname, str):
        return errorname.startswith(_SQLITE_TRANSIENT)
    if isinstance(exc, sa.exc.InterfaceError):
        return True
    text = str(orig).lower()
    return any(marker in text for marker in _SQLITE_TRANSIENT_TEXT)


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What a failing operation was about, for one-line error messages."""

    conflict: str | None = None
    missing_reference: str | None = None


def translate_error(
    exc: BaseException, target: DatabaseTarget, context: ErrorContext | None = None
) -> BastionError | None:
    """The bastion error a driver/SQLAlchemy exception means, or ``None`` to let it propagate.

    Unique violations become :class:`ConflictError`, foreign-key violations
    :class:`NotFoundError`, a missing table :class:`MigrationError`, and every
    connection-level failure :class:`DatabaseUnavailableError` with one line
    naming the redacted URL and the cause.
    """
    if isinstance(exc, BastionError):
        return None
    context = context or ErrorContext()

    def unavailable(cause: BaseException | str) -> DatabaseUnavailableError:
        reason = cause if isinstance(cause, str) else _one_line(cause, target.password)
        return DatabaseUnavailableError(f"database {target.redacted} is unavailable: {reason}")

    if isinstance(exc, sa.exc.IntegrityError):
        orig = exc.orig if exc.orig is not None else exc
        state = _sqlstate(orig)
        text = str(orig)
        if state == "23505" or "UNIQUE constraint failed" in text:
            return ConflictError(context.conflict or "a record with this key already exists")
        if state == "23503" or "FOREIGN KEY constraint failed" in text:
            return NotFoundError(
                context.missing_reference or "a record this one refers to does not exist"
            )
        return StorageError(f"the database refused the write: {_one_line(orig, target.password)}")
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        if _sqlstate(orig) == "42P01" or "no such table" in str(orig):
            return MigrationError(
                f"database {target.redacted} has no bastion schema "
                f"({_one_line(orig, target.password)}) — run `bastion migrate`"
            )
        if exc.connection_invalidated or _is_transient(exc, orig):
            return unavailable(orig)
        return StorageError(f"database error: {_one_line(orig, target.password)}")
    if isinstance(exc, sa.exc.TimeoutError):
        return unavailable("no database connection became free in time")
    if isinstance(exc, TimeoutError):
        return unavailable("timed out")
    if isinstance(exc, (OSError, ConnectionError, *_asyncpg_errors())):
        return unavailable(exc)
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
        return unavailable(exc)
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            translated = translate_error(inner, target, context)
            if translated is not None:
                return translated
    return None


def _asyncpg_errors() -> tuple[type[BaseException], ...]:
    """asyncpg's connection-level errors, if asyncpg is loaded (never imports it).

    Only a PostgreSQL engine (SQLAlchemy's asyncpg dialect) loads asyncpg and can
    raise them; a SQLite node does without it (~5 MiB resident, bench/server/idle_rss.py).
    """
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is None:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)


async def ping_engine(engine: AsyncEngine, target: DatabaseTarget, seconds: float) -> None:
    """Run ``SELECT 1``; raises DatabaseUnavailableError when no answer comes within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    except TimeoutError:
        raise DatabaseUnavailableError(
            f"database {target.redacted} is unavailable: no answer within {seconds:g}s"
        ) from None
    except Exception as exc:
        translated = translate_error(exc, target)
        if translated is None:
            raise
        raise translated from None


__all__ = [
    "DatabaseTarget",
    "Dialect",
    "ErrorContext",
    "create_engine",
    "create_read_engine",
    "parse_database_url",
    "ping_engine",
    "prepare_sqlite_path",
    "translate_error",
]
