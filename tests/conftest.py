"""Shared fixtures: real PostgreSQL and Redis, never mocks.

``BASTION_TEST_POSTGRES_URL`` (e.g. ``postgresql://postgres@127.0.0.1:5432/test``)
and ``BASTION_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``) point the
tests at real servers. Without them the tests that need them are skipped on a
developer machine; under ``CI=true`` they fail instead, so CI can never pass
by skipping them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

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
    """URL of the real Redis server under test."""
    return _require("BASTION_TEST_REDIS_URL")


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to one test, so tests sharing one Redis never collide."""
    return f"bastion-test:{secrets.token_hex(6)}:"


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
    name = f"bastion_t_{secrets.token_hex(6)}"
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


__all__ = ["IN_CI", "AsyncIterator"]
