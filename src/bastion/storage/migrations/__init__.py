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

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from bastion.storage.errors import MigrationError
from bastion.storage.sql.aio import AsyncEngine
from bastion.storage.sql.engine import (
    DatabaseTarget,
    create_engine,
    parse_database_url,
    prepare_sqlite_path,
)
from bastion.storage.sql.revision import (
    HEAD_REVISION,
    current_revision_of_engine,
    explain,
    read_revision,
    run_on_engine,
)

if TYPE_CHECKING:  # Alembic (~10 MiB) loads only when a migration runs (see above)
    from alembic.config import Config

_HERE = Path(__file__).resolve().parent
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
        return await run_on_engine(engine, target, fn, write=write)
    finally:
        await engine.dispose()


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
        if read_revision(connection) == HEAD_REVISION:
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
    return await _run(url, read_revision, write=False)


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
        raise MigrationError(explain(str(exc))) from exc
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
