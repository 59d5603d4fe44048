"""The separate metrics listener: serves its app in this loop, stops cleanly, clear bind errors."""

from __future__ import annotations

import socket

import httpx
import pytest

from bastion.http.errors import ServerStartError
from bastion.http.metrics_listener import start_metrics_listener


async def _app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def test_serves_and_stops() -> None:
    listener = await start_metrics_listener(_app, "127.0.0.1", 0)
    assert listener.url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=listener.url) as http:
        response = await http.get("/metrics")
    assert (response.status_code, response.text) == (200, "/metrics")
    await listener.close()
    await listener.close()  # idempotent
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(base_url=listener.url) as http:
            await http.get("/metrics")


async def test_port_in_use_names_the_metrics_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError) as caught:
            await start_metrics_listener(_app, "127.0.0.1", port)
    assert caught.value.detail == (
        f"metrics listener: cannot listen on 127.0.0.1:{port}: address already in use — stop "
        "the other process or choose another metrics.listen.port"
    )
