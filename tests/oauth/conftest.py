"""Fixtures of the authorization-server service tests: a second node, a master keyring."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bastion.crypto import Keyring, MasterKey
from bastion.storage import Database


@pytest.fixture
async def db2(db_url: str) -> AsyncIterator[Database]:
    """A second connection pool to the same database: a second node."""
    database = await Database.connect(db_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring([MasterKey.generate()])
