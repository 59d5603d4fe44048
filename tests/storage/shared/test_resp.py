"""The pipelined hot-path Redis connection: a real Redis, and servers that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import hiredis
import pytest
import redis.asyncio

from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared.resp import RespPipeline, open_pipeline

SCRIPT = "return {redis.call('INCRBY', KEYS[1], ARGV[1]), tonumber(ARGV[1])}"


def pipeline_for(url: str, *, timeout: float = 1.0) -> RespPipeline:
    pipeline = open_pipeline(
        url, label="redis://test", connect_timeout=0.5, timeout=timeout, operation="test"
    )
    assert pipeline is not None
    return pipeline


@pytest.fixture
async def hot(redis_url: str) -> AsyncIterator[RespPipeline]:
    pipeline = pipeline_for(redis_url)
    yield pipeline
    await pipeline.close()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.mark.redis
async def test_replies_stay_matched_to_commands_under_concurrency(
    hot: RespPipeline, redis_prefix: str
) -> None:
    replies = await asyncio.gather(*(hot.call("ECHO", f"{redis_prefix}{i}") for i in range(500)))
    assert replies == [f"{redis_prefix}{i}".encode() for i in range(500)]
    counts = await asyncio.gather(*(hot.call("INCR", redis_prefix + "n") for _ in range(200)))
    assert sorted(counts) == list(range(1, 201))


@pytest.mark.redis
async def test_a_cancelled_caller_does_not_shift_the_others_replies(
    hot: RespPipeline, redis_prefix: str
) -> None:
    await hot.call("PING")  # connected
    tasks = [asyncio.ensure_future(hot.call("ECHO", str(i))) for i in range(300)]
    await asyncio.sleep(0)  # every command is written
    for task in tasks[::3]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == str(i).encode()
    assert await hot.call("ECHO", "after") == b"after"


@pytest.mark.redis
async def test_evalsha_loads_the_script_when_redis_forgot_it(
    hot: RespPipeline, client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    sha = client.register_script(SCRIPT).sha
    await client.script_flush()
    key = redis_prefix + "s"
    assert await hot.evalsha(sha, SCRIPT, [key], [5]) == [5, 5]  # NOSCRIPT -> EVAL
    assert await hot.evalsha(sha, SCRIPT, [key], [2]) == [7, 2]  # cached now
    with pytest.raises(SharedStateUnavailableError, match=r"\(test\): error reply: ERR"):
        await hot.evalsha("0" * 40, "return redis.call('NOPE')", [key], [1])
    assert await hot.call("GET", key) == b"7"
    error = await hot.call("INCR", "x", "y")  # error replies are returned to call()
    assert isinstance(error, hiredis.ReplyError)


@pytest.mark.redis
async def test_the_database_of_the_url_is_selected(
    redis_url: str, redis_prefix: str, client: redis.asyncio.Redis
) -> None:
    base = redis_url.rsplit("/", 1)[0]
    pipeline = pipeline_for(f"{base}/9")
    other = redis.asyncio.Redis.from_url(f"{base}/9")
    try:
        await pipeline.call("SET", redis_prefix + "db", "nine")
        assert await other.get(redis_prefix + "db") == b"nine"
        assert await client.get(redis_prefix + "db") is None  # not in the fixture's db
        names = [entry.get("name") for entry in await other.client_list()]
        assert "bastion-hot-path" in names  # shows in CLIENT LIST
    finally:
        await other.delete(redis_prefix + "db")
        await other.aclose()
        await pipeline.close()


@pytest.mark.redis
async def test_a_refused_password_is_unavailable_and_not_echoed(redis_url: str) -> None:
    scheme, rest = redis_url.split("://", 1)
    pipeline = pipeline_for(f"{scheme}://:s3cret-pass@{rest}")
    try:
        with pytest.raises(SharedStateUnavailableError, match="AUTH refused") as info:
            await pipeline.call("PING")
        assert "s3cret-pass" not in str(info.value)
    finally:
        await pipeline.close()


@pytest.mark.redis
async def test_a_killed_connection_fails_what_was_in_flight_then_reconnects(
    hot: RespPipeline, client: redis.asyncio.Redis
) -> None:
    await hot.call("PING")
    ids = [e["id"] for e in await client.client_list() if e.get("name") == "bastion-hot-path"]
    blocked = asyncio.ensure_future(hot.call("BLPOP", "bastion-test:never", "5"))
    await asyncio.sleep(0.05)
    for client_id in ids:
        await client.client_kill_filter(_id=client_id)
    with pytest.raises(SharedStateUnavailableError, match="connection"):
        await asyncio.wait_for(blocked, 2)
    assert await hot.call("PING") == b"PONG"  # a new connection


async def test_nobody_listening_fails_fast_with_one_line() -> None:
    pipeline = pipeline_for("redis://127.0.0.1:1/0")
    try:
        started = time.monotonic()
        with pytest.raises(SharedStateUnavailableError) as info:
            await pipeline.call("PING")
        assert time.monotonic() - started < 1.0
        assert str(info.value).startswith("Redis at redis://test is unavailable (test): ")
    finally:
        await pipeline.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A server that accepts connections, reads everything and never answers."""
    connections: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out_in_bounded_time() -> None:
    async with silent_server() as port:
        pipeline = pipeline_for(f"redis://127.0.0.1:{port}/0", timeout=0.2)
        try:
            started = time.monotonic()
            # The set-up (CLIENT SETNAME) gets no answer: the connect timeout (0.5 s).
            with pytest.raises(SharedStateUnavailableError, match="no connection within"):
                await pipeline.call("PING")
            assert time.monotonic() - started < 1.0
        finally:
            await pipeline.close()


async def test_a_reply_overdue_breaks_the_connection_within_the_timeout() -> None:
    """Connected, then the server stalls: every command in flight fails within ~1.25 x timeout."""
    stall = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                if stall.is_set():
                    continue
                writer.write(b"+OK\r\n" if command[0] != b"ECHO" else b"$1\r\nx\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipeline = pipeline_for(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    try:
        assert await pipeline.call("ECHO", "x") == b"x"
        stall.set()
        started = time.monotonic()
        calls = [asyncio.ensure_future(pipeline.call("ECHO", "x")) for _ in range(20)]
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        elapsed = time.monotonic() - started
        assert all(isinstance(r, SharedStateUnavailableError) for r in results)
        assert "no reply within 0.2 s" in str(results[0])
        assert 0.2 <= elapsed < 0.4
    finally:
        await pipeline.close()
        server.close()
        await server.wait_closed()


async def test_closed_pipeline_refuses_calls() -> None:
    pipeline = pipeline_for("redis://127.0.0.1:1/0")
    await pipeline.close()
    with pytest.raises(SharedStateUnavailableError, match="closed"):
        await pipeline.call("PING")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, None, 0)),
        ("redis://cache.internal/3", ("cache.internal", 6379, None, 3)),
        ("redis://h:7000?db=5", ("h", 7000, None, 5)),
        ("unix:///run/redis.sock?db=2", ("127.0.0.1", 6379, "/run/redis.sock", 2)),
        # Read as redis-py reads it (a path that is no number: database 0), so both
        # connections reach the same database.
        ("redis://h:6379/zero", ("h", 6379, None, 0)),
    ],
)
def test_urls_it_serves(url: str, expected: tuple[str, int, str | None, int]) -> None:
    pipeline = open_pipeline(url, label="x", connect_timeout=1, timeout=1)
    assert pipeline is not None
    assert (pipeline.host, pipeline.port, pipeline.path, pipeline.db) == expected


@pytest.mark.parametrize(
    "url",
    [
        "rediss://cache.internal:6380/0",  # TLS: redis-py's
        "redis://h:6379/0?socket_timeout=3",  # options only redis-py knows
        "redis://h:6379/0?db=five",  # refused by redis-py's parser
        "redis://h:port/0",
        "memory://",
    ],
)
def test_urls_left_to_redis_py(url: str) -> None:
    assert open_pipeline(url, label="x", connect_timeout=1, timeout=1) is None


def test_credentials_come_from_the_url() -> None:
    pipeline = open_pipeline(
        "redis://gateway:p%40ss@h:6379/0", label="x", connect_timeout=1, timeout=1
    )
    assert pipeline is not None
    assert (pipeline.username, pipeline.password) == ("gateway", "p@ss")
