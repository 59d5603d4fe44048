"""``bastion serve``: gateway, authorization server and admin plane in one process."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bastion import __version__
from bastion.cli.output import ConfigOption, JsonOption, emit, err_console
from bastion.cli.running import handles_errors, read_settings, run

if TYPE_CHECKING:
    from bastion.http.metrics_listener import MetricsListener
    from bastion.runtime import Runtime
    from bastion.settings.monitoring import MetricsListenSettings
    from bastion.settings.server import AdminListenSettings

__all__ = ["serve"]


@handles_errors
def serve(
    config: Path | None = ConfigOption,
    demo: bool = typer.Option(
        False,
        "--demo",
        help=(
            "Also start the built-in echo upstream behind a public /demo route, and a "
            "browser app behind bastion's login at /app/ (a session route)."
        ),
    ),
    host: str | None = typer.Option(None, "--host", help="Listen address (overrides listen.host)."),
    port: int | None = typer.Option(
        None, "--port", min=1, max=65535, help="Listen port (overrides listen.port)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Start bastion: gateway, authorization server and admin plane in one process.

    Without a configuration it runs on development defaults (SQLite and a master
    key in ./.bastion/, in-process shared state, a self-signed TLS certificate),
    each announced once. SIGTERM or Ctrl-C drains in-flight requests, then exits.
    """
    # mimalloc, the native extension's allocator, asks the kernel for transparent huge
    # pages on its arenas: an idle server then holds whole 2 MiB pages of which it uses
    # a few KiB (~5 MiB of idle RSS, bench/server/idle_rss.py; no throughput change
    # measured). mimalloc reads this once, when the extension loads, which loading the
    # settings does next. An explicit MIMALLOC_ALLOW_THP=1 in the environment wins.
    os.environ.setdefault("MIMALLOC_ALLOW_THP", "0")
    overrides: dict[str, str] = {}
    if demo:
        overrides["BASTION_DEMO__ENABLED"] = "true"
    if host is not None:
        overrides["BASTION_LISTEN__HOST"] = host
    if port is not None:
        overrides["BASTION_LISTEN__PORT"] = str(port)
    flags = {"BASTION_LISTEN__HOST": "--host", "BASTION_LISTEN__PORT": "--port"}
    settings = read_settings(config, overrides, flags)

    from bastion.observability.logs import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    run(_serve(settings, as_json, reload=lambda: read_settings(config, overrides, flags)))


async def _serve(settings: Any, as_json: bool, reload: Callable[[], Any] | None = None) -> None:
    from bastion.http.endpoints import create_full_app
    from bastion.http.server import run_server
    from bastion.runtime import Runtime

    def announce(line: str) -> None:
        if as_json:
            emit({"event": "notice", "message": line}, True, event=True)
        else:
            err_console.print(f"[yellow]•[/] {line}")

    def ready(url: str) -> None:
        if as_json:
            emit({"event": "ready", "url": url}, True, event=True)
        else:
            err_console.print(f"[bold green]bastion {__version__} is listening on {url}[/]")
            if settings.demo.enabled:
                err_console.print(f"  try: curl -k {url}/demo/hello   (and {url}/healthz)")
                err_console.print(f"  and: {url}/app/ in a browser (a user: bastion users create)")

    runtime = await Runtime.open(settings, announce=announce)
    metrics_listener = None
    admin_listener = None
    try:
        app_ = create_full_app(runtime)
        # What start-up built (modules, settings, route tables) lives as long as the
        # process: moved out of the collector's reach, full collections then walk only
        # what requests leave behind (bench/gateway: fewer and shorter pauses).
        gc.collect()
        gc.freeze()
        if settings.metrics.enabled and settings.metrics.listen is not None:
            listen = settings.metrics.listen
            metrics_listener = await _start_metrics_listener(runtime, listen, announce)
        if settings.admin.listen is not None:
            admin_listener = await _start_admin_listener(runtime, settings.admin.listen, announce)
        # Reload without restart (SIGHUP, `bastion routes reload`): bastion.reload.
        from bastion.reload import serving_reloads

        async with serving_reloads(runtime, settings, reload) as certificates:
            await run_server(
                app_,
                settings=settings,
                certfile=runtime.tls.certfile,
                keyfile=runtime.tls.keyfile,
                on_ready=ready,
                certificates=certificates,
            )
    finally:
        if metrics_listener is not None:
            await metrics_listener.close()
        if admin_listener is not None:
            await admin_listener.close()
        await runtime.close()


async def _start_admin_listener(
    runtime: Runtime, listen: AdminListenSettings, announce: Callable[[str], None]
) -> MetricsListener:
    """Start the admin API's own listener (``admin.listen``, the main port's TLS files)."""
    from bastion.http.endpoints.admin import ADMIN_API_PREFIX, admin_listener_app
    from bastion.http.metrics_listener import start_side_listener

    tls = runtime.tls
    listener = await start_side_listener(
        admin_listener_app(runtime),
        listen.host,
        listen.port,
        setting="admin",
        certfile=str(tls.certfile) if tls.certfile is not None else None,
        keyfile=str(tls.keyfile) if tls.keyfile is not None else None,
    )
    announce(f"admin API: served only at {listener.url}{ADMIN_API_PREFIX}")
    return listener


async def _start_metrics_listener(
    runtime: Runtime, listen: MetricsListenSettings, announce: Callable[[str], None]
) -> MetricsListener:
    """Start the separate ``/metrics`` listener (``metrics.listen``) and announce its URL."""
    from bastion.http.endpoints.metrics import metrics_listener_app
    from bastion.http.metrics_listener import start_metrics_listener

    listener = await start_metrics_listener(metrics_listener_app(runtime), listen.host, listen.port)
    announce(f"metrics: served only at {listener.url}/metrics")
    return listener
