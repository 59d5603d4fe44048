"""bastion.storage.sql.aio: the Core part of sqlalchemy.ext.asyncio, without the ORM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.storage.sql.aio import AsyncEngine, create_async_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncEngine:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'aio.db'}")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (n INTEGER NOT NULL)")
    yield engine  # type: ignore[misc]
    await engine.dispose()


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql("SELECT count(*) FROM t")).scalar_one())


async def test_begin_commits_on_success_and_rolls_back_on_error(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO t (n) VALUES (:n)"), {"n": 1})
    with pytest.raises(RuntimeError, match="boom"):
        async with engine.connect() as conn, conn.begin():
            await conn.execute(sa.text("INSERT INTO t (n) VALUES (2)"))
            raise RuntimeError("boom")
    assert await _count(engine) == 1


async def test_results_are_buffered_and_run_sync_gets_the_sync_connection(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(bastion_write=True)
        assert conn.get_execution_options()["bastion_write"] is True
        await conn.execute(sa.text("INSERT INTO t (n) VALUES (7), (8)"))
        await conn.commit()
        result = await conn.execute(sa.text("SELECT n FROM t ORDER BY n"))
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        raw = await conn.get_raw_connection()
        assert raw.dbapi_connection is not None
    # Read after the connection went back to the pool: the rows were fetched already.
    assert result.scalars().all() == [7, 8]
    assert names == ["t"]


def test_a_sync_driver_is_refused() -> None:
    with pytest.raises(sa.exc.ArgumentError, match="not an asyncio one"):
        AsyncEngine(sa.create_engine("sqlite://"))


def test_importing_it_does_not_import_the_orm() -> None:
    code = (
        "import sys, bastion.storage.sql.aio\n"
        "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy.orm', "
        "'sqlalchemy.ext'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
