"""Stored keys cost no memory until used: neither cache holds a key before it is presented.

20,000 keys are stored (SQLite, inserted the way ``bench/apikeys/run.py`` builds its
datasets); a service opens over them with the native mirror. Before any request both caches
are empty and the service's allocations do not grow with the keys stored; after some keys
are presented (and some unknown ones), each cache holds exactly those. The 1,000,000-key
measurement (process memory, the same counts) is ``bench/apikeys/memory.py``.
"""

from __future__ import annotations

import shutil
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from bastion import _native
from bastion.apikeys import ApiKeyService
from bastion.apikeys.errors import InvalidApiKeyError
from bastion.crypto.apikeys import api_key_digest, generate_api_key, parse_api_key
from bastion.gateway import native_push
from bastion.settings import Settings
from bastion.storage import ApiKey, Database
from bastion.storage.shared import MemorySharedState
from bastion.storage.sql import schema
from bastion.storage.sql.repositories import SqlApiKeyRepository

STORED = 20_000
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _store(path: Path, keys: list[str]) -> None:
    mapper = SqlApiKeyRepository.mapper
    rows = [
        mapper.to_row(
            ApiKey(
                digest=api_key_digest(key),
                prefix=parse_api_key(key).display_prefix,
                name=f"k{n}",
                scopes=("orders:read",),
                created_at=AT,
                updated_at=AT,
            )
        )
        for n, key in enumerate(keys)
    ]
    engine = sa.create_engine(
        f"sqlite:///{path}", json_serializer=lambda value: orjson.dumps(value).decode()
    )
    try:
        with engine.begin() as conn:
            conn.execute(schema.api_keys.insert(), rows)
    finally:
        engine.dispose()


async def _open(path: Path) -> ApiKeyService:
    settings = Settings()
    db = await Database.connect(f"sqlite:///{path}")
    service = ApiKeyService(db, settings, MemorySharedState())
    native_push.install(settings, None)
    service.mirror(native_push.NativeApiKeys())
    return service


@pytest.mark.timeout(120)
async def test_stored_keys_cost_nothing_until_presented(
    migrated_sqlite_file: Path, tmp_path: Path
) -> None:
    few, many = tmp_path / "few.db", tmp_path / "many.db"
    shutil.copyfile(migrated_sqlite_file, few)
    shutil.copyfile(migrated_sqlite_file, many)
    keys = [generate_api_key() for _ in range(STORED)]
    _store(few, keys[:1])
    _store(many, keys)

    opened: list[int] = []
    services: list[ApiKeyService] = []
    for path in (few, many):
        tracemalloc.start()
        try:
            service = await _open(path)
            opened.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        services.append(service)
        assert (len(service._found), len(service._unknown)) == (0, 0)
        assert (_native.api_keys_len(), _native.api_keys_refused_len()) == (0, 0)
        if path is few:
            await service.db.close()
    # Opening over 20,000 keys allocates what opening over one does (a connection, no keys):
    # a key in memory is ~1 KiB, so even 1% of them loaded would show.
    assert opened[1] < opened[0] + 64 * 1024, opened

    service = services[1]
    try:
        used = keys[:: STORED // 10]
        for key in used:
            await service.verify(key)
        unknown = [generate_api_key() for _ in range(3)]
        for key in unknown:
            with pytest.raises(InvalidApiKeyError):
                await service.verify(key)
        assert len(service._found) == len(used)
        assert _native.api_keys_len() == len(used)
        assert len(service._unknown) == _native.api_keys_refused_len() == len(unknown)
    finally:
        await service.db.close()
