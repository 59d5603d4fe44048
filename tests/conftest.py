"""Shared fixtures: real PostgreSQL and Redis, never mocks.

``BASTION_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``)
and ``BASTION_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) point the
tests at real servers. Without them the tests that need them are skipped on a
developer machine; under ``CI=true`` they fail instead, so CI can never pass
by skipping them.

The suite runs in parallel (pytest-xdist, ``make test``): each worker is a process of
its own, named by ``PYTEST_XDIST_WORKER`` (``gw0``, ``gw1``, …). Every PostgreSQL
database a test or session creates carries that name and a random part, each worker
uses a Redis database number of its own (``redis_url``) and every test a random key
prefix besides (``redis_prefix``; Redis pub/sub channels span database numbers, the
prefix keeps them apart), and servers listen on ports from a range of the worker's own
(``_support.free_port``), so no two workers share a database, a key or a port
(``_support/workers.py``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from _support import EchoThread
from _support.workers import WORKER, worker_redis_url
from bastion.storage import Database, migrate
from bastion.storage.sql.schema import metadata

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _require(var: str) -> str:
    url = os.environ.get(var)
    if not url:
        message = f"{var} is not set; this test needs the real service"
        if IN_CI:
            pytest.fail(message + " (CI=true: refusing to skip)")
        pytest.skip(message)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis server under test, on this worker's own database number."""
    return worker_redis_url(_require("BASTION_TEST_REDIS_URL"))


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to one test, so tests sharing one Redis never collide."""
    return f"bastion-test:{WORKER}:{secrets.token_hex(6)}:"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the real PostgreSQL server (the database it names is left alone)."""
    return _require("BASTION_TEST_POSTGRES_URL")


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Yields a plain ``postgresql://`` URL, the form users write in config.
    """
    import asyncio

    import asyncpg

    parts = urlsplit(postgres_server_url.replace("postgresql+asyncpg://", "postgresql://"))
    name = f"bastion_t_{WORKER}_{secrets.token_hex(6)}"
    admin_dsn = urlunsplit(parts)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: os.PathLike[str]) -> str:
    """A fresh SQLite database file in the test's temporary directory."""
    return f"sqlite:///{os.fspath(tmp_path)}/bastion.db"


# -- migrated databases, shared by every suite that needs one on each backend ---------------
# Migrating a fresh database per test costs ~0.7 s on PostgreSQL, so tests share one
# migrated database per backend and session: PostgreSQL tables are emptied before each
# test, and each SQLite test gets a copy of a migrated file.


async def _admin(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A PostgreSQL database migrated to head, shared by the session's contract tests."""
    parts = urlsplit(postgres_server_url.replace("postgresql+asyncpg://", "postgresql://"))
    admin_dsn = urlunsplit(parts)
    name = f"bastion_c_{WORKER}_{secrets.token_hex(6)}"
    asyncio.run(_admin(admin_dsn, f'CREATE DATABASE "{name}"'))
    url = urlunsplit(parts._replace(path="/" + name))
    try:
        asyncio.run(migrate(url))
        yield url
    finally:
        asyncio.run(_admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, copied by each contract test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "bastion.db"
    asyncio.run(migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database migrated to head, on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("migrated_sqlite_file")
        path = tmp_path / "bastion.db"
        shutil.copyfile(template, path)
        path.chmod(0o600)  # as bastion creates it (copyfile would leave the umask's 0644)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("migrated_postgres_url")
    # DELETE, children first: much cheaper than TRUNCATE on tiny tables.
    statements = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(metadata.sorted_tables))
    asyncio.run(_admin(url, statements))
    return url


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A connected Database on an empty, migrated database of each backend."""
    database = await Database.connect(db_url)
    try:
        yield database
    finally:
        await database.close()


__all__ = ["IN_CI", "AsyncIterator"]


# -- the slow tier and the order files run in ------------------------------------------------

#: The slow tier (``make test-fast`` leaves it out) is every test that runs bastion in another
#: process — ``bastion serve`` or a CLI command, each a Python start-up and a server or a
#: command on top: the end-to-end features (this folder of tests/), and every module that
#: imports one of these helpers of ``_support``. Elsewhere a test is marked
#: ``@pytest.mark.slow`` itself (a long property test, say).
SLOW_FOLDERS = frozenset({"features"})
PROCESS_HELPERS = frozenset(
    {
        "BastionProcess",
        "GatewayServer",
        "gateway_fixture",
        "run_cli",
        "serve_gateway",
        "serve_on_redis",
        "served_with",
    }
)


def _starts_processes(item: pytest.Item) -> bool:
    """Whether ``item`` is in a slow folder or a module that starts bastion processes."""
    tests = Path(__file__).parent
    if item.path.is_relative_to(tests) and item.path.relative_to(tests).parts[0] in SLOW_FOLDERS:
        return True
    module = getattr(item, "module", None)
    return module is not None and not PROCESS_HELPERS.isdisjoint(vars(module))


@pytest.hookimpl(tryfirst=True)  # before ``-m "not slow"`` deselects by the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests that start bastion processes in the slow tier; run the files with the
    most slow tests first.

    ``make test`` distributes whole files to the workers in this order
    (``--no-loadscope-reorder``): the long files start first and the short ones fill in at
    the end, instead of one long file starting last and running on alone.
    """
    for item in items:
        if _starts_processes(item):
            item.add_marker(pytest.mark.slow)
    slow: dict[Path, int] = {}
    for item in items:
        slow[item.path] = slow.get(item.path, 0) + bool(item.get_closest_marker("slow"))
    first = {path: index for index, path in enumerate(slow)}
    items.sort(key=lambda item: (-slow[item.path], first[item.path]))


@pytest.fixture
def echo() -> Iterator[EchoThread]:
    """A fresh echo upstream for one test (a module that shares one defines its own)."""
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()
