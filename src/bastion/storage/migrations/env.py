"""Alembic environment for bastion's schema.

Normally run programmatically by :func:`bastion.storage.migrations.migrate`,
which hands over an open (sync-facing) connection of an async engine through
``config.attributes["connection"]``. For developers running the ``alembic``
command (e.g. ``alembic revision``), the URL comes from ``sqlalchemy.url`` or
``BASTION_STORAGE`` and an async engine is driven with ``run_sync``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from bastion.storage.sql.schema import metadata

config = context.config


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can't ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=True,
        compare_type=True,
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    from bastion.storage.sql.engine import create_engine, parse_database_url

    engine = create_engine(parse_database_url(url), null_pool=True)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_configure)
            await conn.commit()
    finally:
        await engine.dispose()


def _main() -> None:
    if context.is_offline_mode():
        url = config.get_main_option("sqlalchemy.url") or os.environ.get("BASTION_STORAGE", "")
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("BASTION_STORAGE", "")
    if not url:
        raise SystemExit("set sqlalchemy.url or BASTION_STORAGE to the database URL")
    asyncio.run(_run_with_own_engine(url))


_main()
