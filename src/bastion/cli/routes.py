"""``bastion routes list|reload``: the gateway routes of the configuration and of a running server.

``reload`` asks a running ``bastion serve`` to re-read its configuration file: it
validates the file here first (so a typo is reported at once, with the key and
the fix), then sends SIGHUP to the process named in ``{data_dir}/bastion.pid``
(or ``--pid-file``). The server validates again, swaps its routes atomically and
logs the outcome; an invalid configuration leaves the running routes in place.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bastion.cli.output import ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings

routes_app = typer.Typer(
    help="Gateway routes: list them, reload them in a running server.", no_args_is_help=True
)

PidFileOption = typer.Option(
    None,
    "--pid-file",
    help="The pid file of the running server (default: {data_dir}/bastion.pid).",
)


@routes_app.command("list")
@handles_errors
def list_routes(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List the routes of the configuration: name, match, upstream targets, WebSocket.

    Every route is served by the native data plane (``docs/native.md``).
    """
    settings = read_settings(config)
    rows = [
        {
            "name": route.name,
            "path": route.match.path,
            "host": route.match.host,
            "methods": route.match.methods,
            "upstreams": route.upstreams,
            "websocket": route.websocket.enabled,
        }
        for route in settings.routes
    ]

    def human() -> None:
        if not rows:
            console.print("(no routes)")
        for row in rows:
            methods = ",".join(row["methods"] or ["*"])
            console.print(
                f"{row['name']:<20} {row['host'] or '*'}{row['path']} [{methods}] → "
                f"{', '.join(row['upstreams'])}{'  (websocket)' if row['websocket'] else ''}"
            )

    emit({"routes": rows}, as_json, human)


@routes_app.command("reload")
@handles_errors
def reload_routes(
    config: Path | None = ConfigOption,
    pid_file: Path | None = PidFileOption,
    as_json: bool = JsonOption,
) -> None:
    """Validate the configuration, then make the running server reload its routes (SIGHUP)."""
    from bastion.reload import PID_FILE_NAME, signal_reload

    settings = read_settings(config)  # raises SettingsError (exit 2) for an invalid file
    path = pid_file or settings.data_dir / PID_FILE_NAME
    pid = signal_reload(path)
    report = {"signalled": pid, "pid_file": str(path), "routes": [r.name for r in settings.routes]}
    emit(
        report,
        as_json,
        lambda: console.print(
            f"[green]✓[/] asked bastion (pid {pid}) to reload {len(settings.routes)} route(s); "
            "see its log for the outcome"
        ),
    )
