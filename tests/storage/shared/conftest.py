"""Fixtures for the shared state tests: one contract, run against memory and a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio

from _support import free_port
from bastion.storage.shared import SharedState, open_shared_state

OpenState = Callable[..., Awaitable[SharedState]]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: every contract test runs once per backend."""
    return str(request.param)


@pytest.fixture
async def open_state(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[OpenState]:
    """Open states of ``backend``; ``suffix`` extends the test's key prefix.

    Redis states use the test's unique ``redis_prefix``; every key under it is
    deleted at teardown.
    """
    opened: list[SharedState] = []
    url = "memory://"
    prefix = "bastion-test:memory:"
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")

    async def factory(suffix: str = "") -> SharedState:
        state = await open_shared_state(url, key_prefix=prefix + suffix)
        opened.append(state)
        return state

    yield factory
    for state in opened:
        await state.close()
    if backend == "redis":
        await delete_keys(url, prefix)


@pytest.fixture
async def state(open_state: OpenState) -> SharedState:
    """One open state of the backend under test."""
    return await open_state()


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` in the Redis at ``url``."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def closed_port() -> int:
    """A loopback TCP port nothing listens on (one of this worker's, see ``free_port``)."""
    return free_port()
