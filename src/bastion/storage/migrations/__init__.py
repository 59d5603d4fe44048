"""Schema migrations (Alembic), run programmatically: no ``alembic.ini`` at run time.

``migrate(url)`` upgrades to :data:`HEAD_REVISION` in one transaction (on
PostgreSQL under an advisory lock, so nodes starting together migrate once)
and returns the revisions it applied. Failures raise
:class:`~bastion.storage.errors.MigrationError` (or
``DatabaseUnavailableError`` when the database cannot be reached) with one line.

Alembic (with Mako and Pygments, ~10 MiB resident) is imported only when a
migration has to run or revisions have to be listed: ``bastion serve`` on SQLite
migrates at every start, and a database already at :data:`HEAD_REVISION` (every
start but the first after an upgrade) is recognised by reading its version table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from bastion.errors import BastionError
from bastion.storage.errors import DatabaseUnavailableError, MigrationError
from bastion.storage.sql.aio import AsyncEngine
from bastion.storage.sql.engine import (
    DatabaseTarget,
    create_engine,
    parse_database_url,
    prepare_sqlite_path,
    translate_error,
)

if TYPE_CHECKING:  # Alembic (~10 MiB) loads only when a migration runs (see above)
    from alembic.config import Config

HEAD_REVISION = "0006"
"""The schema revision this version of bastion needs."""

_HERE = Path(__file__).resolve().parent
# Alembic's default version table (env.py does not name another one).
_VERSION_TABLE = "alembic_version"
# Any constant works; it only has to be the same on every node.
_ADVISORY_LOCK_ID = 0x6261_7374_696F_6E  # "bastion"

T = TypeVar("T")


def alembic_config() -> Config:
    """An Alembic configuration pointing at bastion's migration scripts."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    return config


def _open(url: str) -> tuple[DatabaseTarget, AsyncEngine]:
    target = parse_database_url(url)
    if target.dialect == "sqlite":
        prepare_sqlite_path(target)
    return target, create_engine(target, null_pool=True)


async def _run(url: str, fn: Callable[[sa.Connection], T], *, write: bool) -> T:
    target, engine = _open(url)
    try:
        return await _run_on_engine(engine, target, fn, write=write)
    finally:
        await engine.dispose()


async def _run_on_engine(
    engine: AsyncEngine, target: DatabaseTarget, fn: Callable[[sa.Connection], T], *, write: bool
) -> T:
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
            raise MigrationError(_explain(str(exc))) from exc
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


def _explain(message: str) -> str:
    if "Can't locate revision" in message or "No such revision" in message:
        return (
            f"the database schema is at a revision this bastion does not know ({message}); "
            "it was migrated by a newer bastion"
        )
    return message


def _current(connection: sa.Connection) -> str | None:
    # Alembic's MigrationContext.get_current_revision(), without importing Alembic: its
    # version table (default name, see env.py) holds one row, or none before the first
    # revision; no table at all is an empty database.
    if not sa.inspect(connection).has_table(_VERSION_TABLE):
        return None
    rows = connection.execute(sa.text(f"SELECT version_num FROM {_VERSION_TABLE}")).all()
    if len(rows) > 1:
        heads = ", ".join(sorted(str(row[0]) for row in rows))
        raise MigrationError(
            f"the database schema has several heads ({heads}); bastion's migrations have one"
        )
    return str(rows[0][0]) if rows else None


async def migrate(url: str) -> list[str]:
    """Upgrade the database at ``url`` to :data:`HEAD_REVISION`; returns the applied revision ids.

    Raises MigrationError (one line) when a migration fails (nothing is left
    half-applied: the upgrade is one transaction) and DatabaseUnavailableError
    when the database cannot be reached.
    """
    applied: list[str] = []

    def record(*, step: Any, **_: Any) -> None:
        applied.extend(step.up_revision_ids)

    def upgrade(connection: sa.Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID}
            )
        # Under the lock: a database at head needs nothing, and not Alembic either.
        if _current(connection) == HEAD_REVISION:
            return
        from alembic import command

        config = alembic_config()
        config.attributes["connection"] = connection
        config.attributes["on_version_apply"] = record
        command.upgrade(config, "head")

    await _run(url, upgrade, write=True)
    return applied


async def current_revision(url: str) -> str | None:
    """The schema revision of the database at ``url`` (``None`` for an empty database)."""
    return await _run(url, _current, write=False)


async def current_revision_of_engine(engine: AsyncEngine, target: DatabaseTarget) -> str | None:
    """Like :func:`current_revision`, on an already open engine."""
    return await _run_on_engine(engine, target, _current, write=False)


async def pending_revisions(url: str) -> list[str]:
    """The revisions :func:`migrate` would apply, oldest first.

    Raises MigrationError when the database is at a revision unknown to this bastion.
    """
    from alembic.script import ScriptDirectory

    current = await current_revision(url)
    script = ScriptDirectory.from_config(alembic_config())
    try:
        revisions = list(script.iterate_revisions("heads", current or "base"))
    except Exception as exc:  # CommandError and alembic's RevisionError family
        raise MigrationError(_explain(str(exc))) from exc
    return [revision.revision for revision in reversed(revisions) if revision.revision != current]


async def schema_is_current(url: str) -> bool:
    """Whether the database at ``url`` is at :data:`HEAD_REVISION`."""
    return await current_revision(url) == HEAD_REVISION


__all__ = [
    "HEAD_REVISION",
    "alembic_config",
    "current_revision",
    "current_revision_of_engine",
    "migrate",
    "pending_revisions",
    "schema_is_current",
]
