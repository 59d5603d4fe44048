"""The demo echo upstream, spoken to by clients bastion did not write (httpx, raw sockets)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from _support import free_port
from bastion.demo.echo import EchoServer, start_echo_server


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = await start_echo_server()
    try:
        yield server
    finally:
        await server.close()


async def test_answers_with_a_json_description(echo: EchoServer) -> None:
    async with httpx.AsyncClient(base_url=echo.url) as client:
        response = await client.post(
            "/a/%2e/b?x=1&y=%20", content=b"hello", headers={"X-Thing": "One"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    doc = response.json()
    assert doc["method"] == "POST"
    assert doc["path"] == "/a/%2e/b"  # exactly as received, not decoded
    assert doc["query"] == "x=1&y=%20"
    assert doc["headers"]["x-thing"] == "One"
    assert doc["headers"]["content-length"] == "5"
    assert doc["body"] == "hello"
    assert doc["body_encoding"] == "utf-8"
    assert doc["upstream"] == "bastion demo echo"
    assert echo.received[-1].body == b"hello"
    assert echo.received[-1].header("X-Thing") == "One"


async def test_binary_body_is_base64(echo: EchoServer) -> None:
    async with httpx.AsyncClient(base_url=echo.url) as client:
        doc = (await client.put("/b", content=b"\xff\x00\xfe")).json()
    assert doc["body_encoding"] == "base64"
    assert base64.b64decode(doc["body"]) == b"\xff\x00\xfe"


async def test_keep_alive_and_connection_count(echo: EchoServer) -> None:
    async with httpx.AsyncClient(base_url=echo.url) as client:
        for i in range(5):
            assert (await client.get(f"/{i}")).json()["path"] == f"/{i}"
    assert echo.connections == 1
    assert [r.connection for r in echo.received] == [1] * 5


async def test_connection_close_is_honoured(echo: EchoServer) -> None:
    reader, writer = await asyncio.open_connection(echo.host, echo.port)
    writer.write(b"GET /x HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)  # read until the server hangs up
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in data.lower()
    writer.close()


async def test_pipelined_requests_are_answered_in_order(echo: EchoServer) -> None:
    reader, writer = await asyncio.open_connection(echo.host, echo.port)
    writer.write(
        b"GET /1 HTTP/1.1\r\nHost: e\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: e\r\n\r\n"
        b"GET /3 HTTP/1.1\r\nHost: e\r\nConnection: close\r\n\r\n"
    )
    data = await asyncio.wait_for(reader.read(), 5)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert data.index(b'"path":"/1"') < data.index(b'"path":"/2"') < data.index(b'"path":"/3"')
    writer.close()


async def test_head_has_no_body(echo: EchoServer) -> None:
    async with httpx.AsyncClient(base_url=echo.url) as client:
        response = await client.head("/h")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 0


async def test_garbage_gets_400(echo: EchoServer) -> None:
    reader, writer = await asyncio.open_connection(echo.host, echo.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")
    writer.close()


async def test_records_only_the_last_n(echo: EchoServer) -> None:
    small = await start_echo_server(record=2)
    async with httpx.AsyncClient(base_url=small.url) as client:
        for i in range(4):
            await client.get(f"/{i}")
    assert [r.path for r in small.received] == ["/2", "/3"]
    await small.close()


async def test_unknown_knob_is_refused() -> None:
    with pytest.raises(TypeError, match="unknown echo server option 'nope'"):
        await start_echo_server(nope=True)


def test_runs_as_a_module() -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "bastion.demo.echo", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.strip() == f"bastion demo echo listening on http://127.0.0.1:{port}"
            response = httpx.get(f"http://127.0.0.1:{port}/bench?q=1")
            assert response.json()["query"] == "q=1"
        finally:
            process.terminate()
            process.wait(timeout=10)
