"""Redis-specific behaviour: several nodes, outages, recovery, secrets kept out of errors."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import (
    RedisSharedState,
    SharedStateConfigError,
    SharedStateValueError,
    open_shared_state,
)

from .conftest import closed_port, delete_keys

pytestmark = pytest.mark.redis


@pytest.fixture
async def nodes(redis_url: str, redis_prefix: str) -> AsyncIterator[list[RedisSharedState]]:
    """Two separate states on the same Redis and prefix, like two bastion nodes."""
    opened = [await RedisSharedState.connect(redis_url, key_prefix=redis_prefix) for _ in range(2)]
    yield opened
    for state in opened:
        await state.close()
    await delete_keys(redis_url, redis_prefix)


async def test_nodes_see_each_others_keys(nodes: list[RedisSharedState]) -> None:
    a, b = nodes
    await a.set("k", b"from a", ttl=10)
    assert await b.get("k") == b"from a"
    assert await b.delete("k") is True
    assert await a.get("k") is None


async def test_add_across_nodes_has_one_winner(nodes: list[RedisSharedState]) -> None:
    a, b = nodes
    results = await asyncio.gather(
        *(node.add("code", b"x", ttl=10) for _ in range(25) for node in (a, b))
    )
    assert results.count(True) == 1


async def test_incr_across_nodes_is_exact(nodes: list[RedisSharedState]) -> None:
    a, b = nodes
    await asyncio.gather(*(node.incr("n", ttl=10) for _ in range(50) for node in (a, b)))
    assert await a.get("n") == b"100"


async def test_pubsub_across_nodes(nodes: list[RedisSharedState]) -> None:
    a, b = nodes
    async with a.subscribe("revocations") as on_a, b.subscribe("revocations") as on_b:
        await b.publish("revocations", b"key-7")
        assert await asyncio.wait_for(anext(on_a), 2) == b"key-7"
        assert await asyncio.wait_for(anext(on_b), 2) == b"key-7"


async def test_keys_and_channels_carry_the_prefix(
    nodes: list[RedisSharedState], redis_prefix: str
) -> None:
    a, _ = nodes
    await a.set("k", b"v")
    assert await a.client.get(redis_prefix + "k") == b"v"
    async with a.subscribe("ch"):
        counts = await a.client.pubsub_numsub(redis_prefix + "ch")
        assert counts == [(f"{redis_prefix}ch".encode(), 1)]


async def test_closing_a_subscription_unsubscribes_in_redis(
    nodes: list[RedisSharedState], redis_prefix: str
) -> None:
    a, b = nodes
    subscription = await a.subscribe("ch")
    assert await b.client.pubsub_numsub(redis_prefix + "ch") == [(f"{redis_prefix}ch".encode(), 1)]
    await subscription.close()
    assert await b.client.pubsub_numsub(redis_prefix + "ch") == [(f"{redis_prefix}ch".encode(), 0)]


async def test_wrong_type_is_a_value_error(
    nodes: list[RedisSharedState], redis_prefix: str
) -> None:
    a, _ = nodes
    await a.client.rpush(redis_prefix + "list", b"x")
    with pytest.raises(SharedStateValueError) as caught:
        await a.get("list")
    assert caught.value.code == "shared_state_value"


# -- outages ------------------------------------------------------------------------------


async def test_unreachable_redis_at_open() -> None:
    port = closed_port()
    with pytest.raises(SharedStateUnavailableError) as caught:
        await open_shared_state(f"redis://:s3cret@127.0.0.1:{port}/0")
    error = caught.value
    assert error.code == "shared_state_unavailable"
    assert error.status == 503
    assert error.detail.startswith(
        f"Redis at redis://:***@127.0.0.1:{port}/0 is unavailable (PING): ConnectionError: "
    )
    assert f"127.0.0.1:{port}" in error.detail.removeprefix("Redis at")
    assert "\n" not in error.detail
    assert "s3cret" not in error.detail
    assert "s3cret" not in repr(error.to_problem())


async def test_unreachable_redis_on_every_operation() -> None:
    port = closed_port()
    url = f"redis://user:s3cret@127.0.0.1:{port}/0"
    client = redis.asyncio.Redis.from_url(
        url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    state = RedisSharedState(client, url=url, key_prefix="bastion-test:down:")
    operations = {
        "GET": state.get("k"),
        "SET": state.set("k", b"v", ttl=1),
        "DEL": state.delete("k"),
        "SET NX": state.add("k", b"v", ttl=1),
        "INCRBY": state.incr("k", ttl=1),
        "PTTL": state.ttl("k"),
        "PUBLISH": state.publish("ch", b"m"),
        "SUBSCRIBE 'ch'": state.subscribe("ch"),
        "PING": state.ping(),
    }
    try:
        for operation, call in operations.items():
            with pytest.raises(SharedStateUnavailableError) as caught:
                await call
            detail = caught.value.detail
            assert detail.startswith(
                f"Redis at redis://user:***@127.0.0.1:{port}/0 is unavailable ({operation}): "
                "ConnectionError: "
            ), detail
            assert "s3cret" not in detail
    finally:
        await state.close()


async def test_unparseable_redis_url_is_a_config_error() -> None:
    with pytest.raises(SharedStateConfigError) as caught:
        await open_shared_state("redis://:s3cret@127.0.0.1:notaport/0")
    assert caught.value.code == "shared_state_config"
    assert caught.value.detail.startswith(
        "shared state URL redis://:***@127.0.0.1:notaport/0 is not a valid Redis URL: "
    )
    assert "s3cret" not in caught.value.detail


# -- recovery ------------------------------------------------------------------------------


async def _kill_connections(redis_url: str, name: str, *, subscribers: bool) -> int:
    """Kill the server side of every connection called ``name`` (pub/sub ones or the others)."""
    admin = redis.asyncio.Redis.from_url(redis_url)
    try:
        killed = 0
        for client in await admin.client_list():
            is_subscriber = int(client.get("sub", 0)) > 0
            if client.get("name") == name and is_subscriber == subscribers:
                await admin.client_kill_filter(_id=client["id"])
                killed += 1
        return killed
    finally:
        await admin.aclose()


@pytest.fixture
def connection_name() -> str:
    """A client name unique to the test, so exactly its connections can be killed."""
    return f"bastion-test-{secrets.token_hex(4)}"


@pytest.fixture
async def named(
    redis_url: str, redis_prefix: str, connection_name: str
) -> AsyncIterator[RedisSharedState]:
    """A state whose connections carry ``connection_name``."""
    state = await RedisSharedState.connect(
        redis_url, key_prefix=redis_prefix, client_name=connection_name
    )
    yield state
    await state.close()
    await delete_keys(redis_url, redis_prefix)


async def test_operations_recover_after_connections_are_killed(
    named: RedisSharedState, redis_url: str, connection_name: str
) -> None:
    await named.set("k", b"v")
    assert await _kill_connections(redis_url, connection_name, subscribers=False) >= 1
    assert await named.get("k") == b"v"
    assert await named.incr("n") == 1


async def test_a_subscription_reports_a_lost_connection(
    named: RedisSharedState, redis_url: str, connection_name: str
) -> None:
    subscription = await named.subscribe("revocations")
    await named.publish("revocations", b"before")
    assert await asyncio.wait_for(anext(subscription), 2) == b"before"
    assert await _kill_connections(redis_url, connection_name, subscribers=True) == 1
    with pytest.raises(SharedStateUnavailableError) as caught:
        await asyncio.wait_for(anext(subscription), 3)
    assert caught.value.detail == (
        f"Redis at {named.url} is unavailable (subscription to 'revocations'): "
        "the connection was lost and messages may have been missed"
    )
    await subscription.close()
    # A new subscription works again.
    async with named.subscribe("revocations") as again:
        await named.publish("revocations", b"after")
        assert await asyncio.wait_for(anext(again), 2) == b"after"


# -- unix sockets and a silent server -------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def test_unix_socket_url(redis_url: str, redis_prefix: str) -> None:
    """unix:// works: a socket forwarding to the test Redis stands in for redis.sock."""
    target = urlsplit(redis_url)
    tasks: set[asyncio.Task[None]] = set()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        for task in (_pipe(reader, up_writer), _pipe(up_reader, writer)):
            tasks.add(asyncio.create_task(task))

    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        path = Path(directory) / "redis.sock"
        server = await asyncio.start_unix_server(forward, path=str(path))
        db = target.path.lstrip("/") or "0"
        try:
            state = await open_shared_state(f"unix://{path}?db={db}", key_prefix=redis_prefix)
            try:
                assert state.backend == "redis"
                await state.set("k", b"via unix", ttl=10)
                assert await state.get("k") == b"via unix"
            finally:
                await state.close()
        finally:
            server.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await delete_keys(redis_url, redis_prefix)


async def test_ping_is_bounded_when_redis_does_not_answer() -> None:
    """A server that accepts connections but never answers costs about a second, not more."""
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(SharedStateUnavailableError) as caught:
            await open_shared_state(f"redis://127.0.0.1:{port}/0")
        assert loop.time() - started < 1.8
        assert caught.value.detail == (
            f"Redis at redis://127.0.0.1:{port}/0 is unavailable (PING): no answer within 1s"
        )
    finally:
        server.close()
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()


async def test_repr_hides_the_password(redis_url: str) -> None:
    state = await RedisSharedState.connect(redis_url, key_prefix="p:")
    try:
        assert repr(state) == f"RedisSharedState(url={redis_url!r}, key_prefix='p:')"
    finally:
        await state.close()
