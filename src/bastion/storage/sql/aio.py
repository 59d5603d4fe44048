"""The asyncio face of a SQLAlchemy Core engine: what bastion uses of ``sqlalchemy.ext.asyncio``.

Why not ``sqlalchemy.ext.asyncio`` itself: importing it imports the ORM (for
``AsyncSession``), about 7 MiB resident in every ``bastion serve`` that bastion, a
Core-only user, never touches (``bench/server/idle_rss.py``, issue 14). What it does
for Core is small and is reproduced here with the same primitives and semantics:
each call runs the sync ``Connection`` method in a greenlet
(``sqlalchemy.util.concurrency.greenlet_spawn``, which lets the async drivers —
aiosqlite, asyncpg — await inside), results are buffered, and a connection's
``close()`` on leaving ``async with`` runs to completion even when the task is
cancelled (a half-closed connection must not go back to a pool).

Kept deliberately narrow: ``connect``/``begin``/``dispose`` on the engine and
``execute``/``exec_driver_sql``/``run_sync``/``begin``/``commit``/``rollback``/
``execution_options``/``get_raw_connection`` on a connection. Streaming results
(server-side cursors) are not offered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Engine, Transaction
from sqlalchemy.engine.create import create_engine as _create_engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn

__all__ = ["AsyncConnection", "AsyncEngine", "AsyncTransaction", "create_async_engine"]

T = TypeVar("T")
# A result whose rows are tuples of any length (what an untyped statement returns).
Rows = CursorResult[*tuple[Any, ...]]


async def _run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end even if the caller is cancelled meanwhile (then re-raise)."""
    task = asyncio.ensure_future(coro)
    cancelled: BaseException | None = None
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError as err:
            if task.done():
                raise
            cancelled = err
        else:
            break
    if cancelled is not None:
        raise cancelled
    return result


def create_async_engine(url: str | sa.URL, **kw: Any) -> AsyncEngine:
    """An engine for an async driver (``sqlite+aiosqlite``, ``postgresql+asyncpg``)."""
    if kw.get("server_side_cursors", False):
        raise sa.exc.ArgumentError("server-side cursors are not supported here")
    # What sqlalchemy.ext.asyncio.create_async_engine passes: the pool and dialect
    # then adapt the driver's connections for use from greenlets.
    kw["_is_async"] = True
    return AsyncEngine(_create_engine(url, **kw))


class AsyncEngine:
    """An async face of ``sync_engine`` (whose events and pool are the real ones)."""

    def __init__(self, sync_engine: Engine) -> None:
        if not sync_engine.dialect.is_async:
            raise sa.exc.ArgumentError(
                f"the {sync_engine.dialect.name} dialect's driver is not an asyncio one"
            )
        self.sync_engine = sync_engine

    @property
    def dialect(self) -> sa.Dialect:
        return self.sync_engine.dialect

    @property
    def url(self) -> sa.URL:
        return self.sync_engine.url

    def connect(self) -> AsyncConnection:
        """A connection to use as ``async with engine.connect() as conn``."""
        return AsyncConnection(self)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction, committed on success, rolled back on error."""
        async with self.connect() as conn, conn.begin():
            yield conn

    async def dispose(self, close: bool = True) -> None:
        """Close the pool's connections (``close=False``: drop them without closing)."""
        await greenlet_spawn(self.sync_engine.dispose, close=close)


class AsyncConnection:
    """One pooled connection; ``async with`` returns it to the pool (or closes it)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sync_engine = engine.sync_engine
        self._sync: Connection | None = None

    @property
    def sync_connection(self) -> Connection:
        if self._sync is None:
            raise sa.exc.InvalidRequestError("the connection is not started: use async with")
        return self._sync

    async def start(self) -> AsyncConnection:
        if self._sync is not None:
            raise sa.exc.InvalidRequestError("connection is already started")
        self._sync = await greenlet_spawn(self.sync_engine.connect)
        return self

    def __await__(self) -> Any:
        return self.start().__await__()

    async def __aenter__(self) -> AsyncConnection:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await _run_to_completion(self.close())

    async def close(self) -> None:
        """Return the connection to the pool (rolling back an open transaction)."""
        if self._sync is not None:
            await greenlet_spawn(self._sync.close)

    @property
    def closed(self) -> bool:
        return self._sync is None or self._sync.closed

    def begin(self) -> AsyncTransaction:
        """A transaction: ``async with conn.begin():`` commits, or rolls back on error."""
        return AsyncTransaction(self)

    def in_transaction(self) -> bool:
        return self.sync_connection.in_transaction()

    async def commit(self) -> None:
        await greenlet_spawn(self.sync_connection.commit)

    async def rollback(self) -> None:
        await greenlet_spawn(self.sync_connection.rollback)

    async def execution_options(self, **options: Any) -> AsyncConnection:
        """Set execution options on this connection (returns it)."""
        await greenlet_spawn(self.sync_connection.execution_options, **options)
        return self

    def get_execution_options(self) -> Mapping[str, Any]:
        return self.sync_connection.get_execution_options()

    async def get_raw_connection(self) -> PoolProxiedConnection:
        """The pooled DBAPI connection in use (for tests and diagnostics)."""
        return await greenlet_spawn(getattr, self.sync_connection, "connection")

    async def execute(
        self,
        statement: sa.Executable,
        parameters: Any = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Rows:
        """Run ``statement``; the result is buffered (read it without awaiting)."""
        result: Rows = await greenlet_spawn(
            self.sync_connection.execute,
            statement,
            parameters,
            execution_options=execution_options,
            _require_await=True,
        )
        return result

    async def exec_driver_sql(
        self,
        statement: str,
        parameters: Any = None,
        execution_options: Mapping[str, Any] | None = None,
    ) -> Rows:
        """Run a driver-level SQL string; the result is buffered."""
        result: Rows = await greenlet_spawn(
            self.sync_connection.exec_driver_sql,
            statement,
            parameters,
            execution_options,
            _require_await=True,
        )
        return result

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn(sync_connection, *args, **kwargs)`` where the sync API may be used."""
        result: T = await greenlet_spawn(
            fn, self.sync_connection, *args, _require_await=False, **kwargs
        )
        return result


class AsyncTransaction:
    """``async with conn.begin():`` — the sync ``Transaction``'s context, awaited."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._sync: Transaction | None = None

    async def __aenter__(self) -> AsyncTransaction:
        self._sync = await greenlet_spawn(self.connection.sync_connection.begin)
        self._sync.__enter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        assert self._sync is not None  # entered first
        await greenlet_spawn(self._sync.__exit__, *exc_info)

    async def commit(self) -> None:
        assert self._sync is not None
        await greenlet_spawn(self._sync.commit)

    async def rollback(self) -> None:
        assert self._sync is not None
        await greenlet_spawn(self._sync.rollback)
