"""The schema revision: the one this bastion needs, and the one a database is at.

Read without Alembic (its version table is one row), so a node whose database is
current never loads it. :mod:`bastion.storage.migrations` changes the revision;
this module sits below it, inside the SQL package, so that
:meth:`bastion.storage.sql.Database.check_schema` can read the revision with a
plain import (the migrations load the SQL package, not the other way round).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

from bastion.errors import BastionError
from bastion.storage.errors import DatabaseUnavailableError, MigrationError
from bastion.storage.sql.aio import AsyncEngine
from bastion.storage.sql.engine import DatabaseTarget, translate_error

__all__ = [
    "HEAD_REVISION",
    "VERSION_TABLE",
    "current_revision_of_engine",
    "explain",
    "read_revision",
    "run_on_engine",
]

HEAD_REVISION = "0010"
"""The schema revision this version of bastion needs."""

#: Alembic's default version table (migrations/env.py does not name another one).
VERSION_TABLE = "alembic_version"

T = TypeVar("T")


async def run_on_engine(
    engine: AsyncEngine, target: DatabaseTarget, fn: Callable[[sa.Connection], T], *, write: bool
) -> T:
    """Run ``fn`` on one connection of ``engine`` and commit; every failure is one line.

    Raises MigrationError (a failed migration or revision read) or
    DatabaseUnavailableError (the database cannot be reached).
    """
    try:
        async with engine.connect() as conn:
            if write:
                await conn.execution_options(bastion_write=True)
            result = await conn.run_sync(fn)
            await conn.commit()
            return result
    except BastionError:
        raise
    except Exception as exc:
        if _is_command_error(exc):
            raise MigrationError(explain(str(exc))) from exc
        if isinstance(translated := translate_error(exc, target), DatabaseUnavailableError):
            raise translated from exc
        line = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise MigrationError(
            f"migrating {target.redacted} failed: {line[0] if line else type(exc).__name__}"
        ) from exc


def _is_command_error(exc: Exception) -> bool:
    """Whether ``exc`` is Alembic's ``CommandError``; never imports Alembic to tell."""
    # Only code that imported Alembic can raise its errors: when it is not loaded, no.
    errors = sys.modules.get("alembic.util.exc")
    return errors is not None and isinstance(exc, errors.CommandError)


def explain(message: str) -> str:
    """Alembic's message, with the likely cause when the revision is unknown here."""
    if "Can't locate revision" in message or "No such revision" in message:
        return (
            f"the database schema is at a revision this bastion does not know ({message}); "
            "it was migrated by a newer bastion"
        )
    return message


def read_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    # Alembic's MigrationContext.get_current_revision(), without importing Alembic: its
    # version table (default name, see env.py) holds one row, or none before the first
    # revision; no table at all is an empty database.
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    if len(rows) > 1:
        heads = ", ".join(sorted(str(row[0]) for row in rows))
        raise MigrationError(
            f"the database schema has several heads ({heads}); bastion's migrations have one"
        )
    return str(rows[0][0]) if rows else None


async def current_revision_of_engine(engine: AsyncEngine, target: DatabaseTarget) -> str | None:
    """The revision of the database behind an already open engine."""
    return await run_on_engine(engine, target, read_revision, write=False)
