"""Migrations: programmatic Alembic on SQLite and PostgreSQL, and schema.py == migrated schema."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from bastion.storage import (
    HEAD_REVISION,
    MigrationError,
    current_revision,
    migrate,
    pending_revisions,
    schema_is_current,
)
from bastion.storage.migrations import alembic_config
from bastion.storage.sql import Database, metadata
from bastion.storage.sql.engine import create_engine, parse_database_url


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    )


async def _diff(url: str, target: sa.MetaData) -> list[object]:
    engine = create_engine(parse_database_url(url), null_pool=True)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(
                        sync, opts={"compare_type": True, "compare_server_default": True}
                    ),
                    target,
                )
            )
    finally:
        await engine.dispose()


async def _execute(url: str, sql: str) -> None:
    engine = create_engine(parse_database_url(url), null_pool=True)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


def test_head_revision_is_the_scripts_head() -> None:
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]


ALL_REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010"]


async def test_migrate_fresh_database(fresh_url: str) -> None:
    assert await current_revision(fresh_url) is None
    assert await pending_revisions(fresh_url) == ALL_REVISIONS
    assert await schema_is_current(fresh_url) is False
    assert await migrate(fresh_url) == ALL_REVISIONS
    assert await current_revision(fresh_url) == HEAD_REVISION
    assert await pending_revisions(fresh_url) == []
    assert await schema_is_current(fresh_url) is True
    assert await migrate(fresh_url) == []  # idempotent


async def test_migrated_schema_equals_schema_py(fresh_url: str) -> None:
    await migrate(fresh_url)
    assert await _diff(fresh_url, metadata) == []
    # The comparison can fail: a column schema.py has and the database lacks is a diff.
    changed = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    sa.Table("users", changed, sa.Column("nickname", sa.String(40)), extend_existing=True)
    diffs = await _diff(fresh_url, changed)
    assert [d[0] for d in diffs if isinstance(d, tuple)] == ["add_column"]


async def test_failed_migration_is_one_line_and_applies_nothing(fresh_url: str) -> None:
    await _execute(fresh_url, "CREATE TABLE webhooks (x INTEGER)")
    with pytest.raises(MigrationError) as info:
        await migrate(fresh_url)
    assert info.value.code == "migration_error"
    assert info.value.detail.startswith("migrating ")
    assert "failed: " in info.value.detail
    assert "\n" not in info.value.detail
    assert await current_revision(fresh_url) is None
    # The upgrade was one transaction: the tables created before the failure are gone.
    assert await _diff(fresh_url, sa.MetaData()) != []
    engine = create_engine(parse_database_url(fresh_url), null_pool=True)
    try:
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    assert sorted(tables) == ["webhooks"]


async def test_unknown_revision_in_database(fresh_url: str) -> None:
    await migrate(fresh_url)
    await _execute(fresh_url, "UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(MigrationError, match="a revision this bastion does not know"):
        await pending_revisions(fresh_url)
    with pytest.raises(MigrationError, match="a revision this bastion does not know"):
        await migrate(fresh_url)
    db = await Database.connect(fresh_url)
    try:
        with pytest.raises(MigrationError) as info:
            await db.check_schema()
        assert info.value.detail == (
            "database schema is at revision ffff, this bastion needs 0010 — run `bastion migrate`"
        )
    finally:
        await db.close()
