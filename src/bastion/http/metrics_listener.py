"""The separate metrics listener: plain HTTP serving only ``/metrics``, next to the main server.

Started by ``bastion serve`` when ``metrics.listen`` is set, in the same event
loop as the main server (so a scrape reads the counters from the thread that
writes them). It is always uvicorn (h11/httptools, no TLS: it is meant for a
private interface), beside the native front of the main port; it has no
ASGI lifespan (the runtime's start-up and shutdown belong to the main app).

:func:`start_side_listener` is the same machinery for any such listener (the
admin listener, ``admin.listen``, uses it with the main port's TLS files).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from bastion.http.errors import ServerStartError
from bastion.http.server import _bind, _display_url, _uvicorn_server_class
from bastion.http.types import ASGIApp

__all__ = ["MetricsListener", "start_metrics_listener", "start_side_listener"]


@dataclass
class MetricsListener:
    """A running metrics listener; :meth:`close` stops it."""

    url: str
    _server: object
    _task: asyncio.Task[None]

    async def close(self) -> None:
        """Stop accepting, finish in-flight scrapes (briefly), and return. Idempotent."""
        self._server.should_exit = True  # type: ignore[attr-defined]
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self._task), timeout=5.0)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def start_metrics_listener(app: ASGIApp, host: str, port: int) -> MetricsListener:
    """Serve ``app`` on ``host:port`` (plain HTTP) in this loop; return once it accepts.

    Raises :class:`~bastion.http.errors.ServerStartError` naming
    ``metrics.listen`` when the address cannot be bound.
    """
    return await start_side_listener(app, host, port, setting="metrics")


async def start_side_listener(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    setting: str,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> MetricsListener:
    """Serve ``app`` on ``host:port`` in this loop (https with ``certfile``); return once it
    accepts. ``setting`` (``metrics``, ``admin``) names the section in errors.

    Raises :class:`~bastion.http.errors.ServerStartError` naming ``<setting>.listen``
    when the address cannot be bound or the server does not start.
    """
    import uvicorn

    try:
        sock = _bind(host, port)
    except ServerStartError as exc:
        raise ServerStartError(
            f"{setting} listener: {exc.detail}".replace("listen.", f"{setting}.listen.")
        ) from None
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        lifespan="off",
        server_header=False,
        date_header=True,
        proxy_headers=False,
        forwarded_allow_ips=[],
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=2,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    config.load()
    server = _uvicorn_server_class()(config)
    started = asyncio.Event()
    server.on_started = started.set

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    task = asyncio.ensure_future(serve())
    waiter = asyncio.ensure_future(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not started.is_set():
        waiter.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ServerStartError(f"{setting} listener on {host}:{port} failed to start; see the log")
    url = _display_url("https" if certfile else "http", host, sock.getsockname()[1])
    return MetricsListener(url=url, _server=server, _task=task)
