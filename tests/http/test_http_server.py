"""run_server end to end over real sockets: TLS, headers, graceful drain, start-up errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import make_runtime, make_settings
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bastion import _native
from bastion.crypto import ensure_dev_certificate
from bastion.http.app import create_app
from bastion.http.errors import ServerStartError
from bastion.http.server import run_server


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return ensure_dev_certificate(tmp_path_factory.mktemp("tls"), hosts=("127.0.0.1",))


async def start(
    app: Any,
    cert: tuple[Path, Path] | None = None,
    graceful_timeout: float = 5.0,
) -> tuple[asyncio.Task[None], str, asyncio.Event]:
    """Start run_server in the background; return (task, url, stop event) once it listens."""
    # No native table (another test's, left in this process, would answer for it): the
    # native front hands every request to the app, which refuses gateway paths (503).
    _native.routes_unload()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_server(
            app,
            settings=make_settings(0, graceful_timeout),
            certfile=cert[0] if cert else None,
            keyfile=cert[1] if cert else None,
            on_ready=ready.set_result,
            stop=stop,
        )
    )
    await asyncio.wait({ready, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    return task, ready.result(), stop


def slow_app(seconds: float, started: asyncio.Event | None = None) -> Any:
    """The app with a bastion endpoint at ``/admin/slow`` answering ``done`` after ``seconds``
    (``started`` is set when a request reaches it)."""

    async def slow(request: Any) -> PlainTextResponse:
        if started is not None:
            started.set()
        await asyncio.sleep(seconds)
        return PlainTextResponse("done")

    return create_app(make_runtime(settings=make_settings()), routes=[Route("/admin/slow", slow)])


def tls_client(cert: tuple[Path, Path]) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert[0])), timeout=10)


async def test_https_healthz_end_to_end(cert: tuple[Path, Path]) -> None:
    calls: list[str] = []

    async def startup() -> None:
        calls.append("startup")

    async def shutdown() -> None:
        calls.append("shutdown")

    runtime = make_runtime(settings=make_settings(), startup=startup, shutdown=shutdown)
    task, url, stop = await start(create_app(runtime), cert)
    try:
        assert url.startswith("https://127.0.0.1:")
        assert calls == ["startup"]
        async with tls_client(cert) as client:
            response = await client.get(f"{url}/healthz", headers={"x-request-id": "e2e-1"})
            missing = await client.get(f"{url}/admin/nothing")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"] == "e2e-1"
    assert "server" not in response.headers  # neither the front nor the app names itself
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert calls == ["startup", "shutdown"]


async def test_plain_http_has_no_hsts() -> None:
    runtime = make_runtime(settings=make_settings())
    task, url, stop = await start(create_app(runtime))
    try:
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{url}/api/anything")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    # No route table loaded: the gateway path reaches the app, which refuses it.
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["reason"] == "gateway_unavailable"
    assert "strict-transport-security" not in response.headers


async def test_in_flight_request_finishes_on_stop(cert: tuple[Path, Path]) -> None:
    started = asyncio.Event()
    task, url, stop = await start(slow_app(1.0, started), cert)
    async with tls_client(cert) as client:
        in_flight = asyncio.create_task(client.get(f"{url}/admin/slow"))
        await asyncio.wait_for(started.wait(), 10)  # the request is in flight
        stop.set()
        response = await asyncio.wait_for(in_flight, 10)
    await asyncio.wait_for(task, 15)
    assert response.status_code == 200
    assert response.text == "done"
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_sigterm_drains_in_flight_requests() -> None:
    started = asyncio.Event()
    task, url, _ = await start(slow_app(1.0, started))
    async with httpx.AsyncClient(timeout=10) as client:
        in_flight = asyncio.create_task(client.get(f"{url}/admin/slow"))
        await asyncio.wait_for(started.wait(), 10)  # the request is in flight
        os.kill(os.getpid(), signal.SIGTERM)
        response = await asyncio.wait_for(in_flight, 10)
    await asyncio.wait_for(task, 15)
    assert response.status_code == 200
    assert response.text == "done"


async def test_port_in_use_is_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError) as info:
            await run_server(
                create_app(make_runtime()),
                settings=make_settings(port),
                certfile=None,
                keyfile=None,
            )
    assert info.value.code == "server_start_failed"
    assert str(info.value) == (
        f"cannot listen on 127.0.0.1:{port}: address already in use — stop the other process "
        "or choose another listen.port"
    )


async def test_failed_application_startup_is_a_start_error() -> None:
    async def startup() -> None:
        raise RuntimeError("boom")

    runtime = make_runtime(startup=startup, settings=make_settings())
    with pytest.raises(ServerStartError) as info:
        await asyncio.wait_for(
            run_server(
                create_app(runtime),
                settings=make_settings(),
                certfile=None,
                keyfile=None,
            ),
            15,
        )
    assert str(info.value) == (
        "the application failed to start (ASGI lifespan start-up); see the log above"
    )


async def test_certificate_without_key(cert: tuple[Path, Path]) -> None:
    with pytest.raises(ServerStartError) as info:
        await run_server(
            create_app(make_runtime()), settings=make_settings(), certfile=cert[0], keyfile=None
        )
    assert str(info.value) == "TLS needs both a certificate and a key file (tls.cert, tls.key)"
