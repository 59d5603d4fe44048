"""The ``bastion`` command tree.

Commands are thin: they load settings, call the packages that do the work and
print the result through :mod:`bastion.cli.output`. Every command group is
registered here (their commands live in the modules imported at the end), so the
tree a user discovers with ``--help`` is the whole product's.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import sys
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
import typer.core

# typer vendors click (typer._click): its usage errors are these classes, not click's.
from typer._click import exceptions as click_errors

from bastion import __version__
from bastion.cli.output import (
    ConfigOption,
    JsonOption,
    console,
    emit,
    err_console,
    fail,
    usage_error,
)
from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.http.metrics_listener import MetricsListener
    from bastion.runtime import Runtime
    from bastion.settings.monitoring import MetricsListenSettings
    from bastion.settings.server import AdminListenSettings


class _BastionGroup(typer.core.TyperGroup):
    """The root command: usage errors are one line (``error: …``), like every other error.

    Typer (rich mode) draws click's usage errors in a box under the usage text;
    here they are reported by :func:`bastion.cli.output.usage_error` instead, on
    one line naming the flag, or as JSON when ``--json`` was given.
    """

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(argv, prog_name, complete_var, False, **extra)
        except click_errors.NoArgsIsHelpError as error:
            sys.exit(error.exit_code)  # the help is already printed
        except click_errors.ClickException as error:
            usage_error(error, "--json" in argv)
            sys.exit(error.exit_code)
        except typer.Abort:
            err_console.print("aborted")
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


_display_type = typer.core.TyperOption.display_type_rich


def _flag_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    # typer 0.29 shows every option's Python type in help, flags included
    # (`--json <bool>`); a flag takes no value, so it shows none.
    return None if self.is_flag else _display_type(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign]

app = typer.Typer(
    cls=_BastionGroup,
    name="bastion",
    help=(
        "bastion — self-hosted API security gateway and OAuth 2.0 / OpenID Connect provider.\n\n"
        "Start with `bastion serve --demo`; validate a configuration with "
        "`bastion check-config -c bastion.yaml`."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn a ``BastionError`` escaping ``func`` into the one-line report and exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BastionError as error:
            fail(error, bool(kwargs.get("as_json")))

    return wrapper  # type: ignore[return-value]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when available (the server's loop), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def _settings(
    config: Path | None,
    overrides: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Any:
    """Load the settings, ``overrides`` (``BASTION_*`` values a flag set) on top.

    ``flags`` maps such a variable to its flag: a problem with the value is then
    reported as ``--port: …`` instead of naming the variable the user never set.
    """
    from bastion.settings import SettingsError, load_settings

    environ = dict(os.environ)
    if overrides:
        environ.update(overrides)
    try:
        return load_settings(config, environ)
    except SettingsError as error:
        if not flags:
            raise
        lines = []
        for line in error.errors:
            for variable, flag in flags.items():
                if line.startswith(f"{variable}: "):
                    line = f"{flag}: {line[len(variable) + 2 :]}"
            lines.append(line)
        raise SettingsError(lines) from None


# ---------------------------------------------------------------------------
# version, check-config


@app.command()
@handles_errors
def version(as_json: bool = JsonOption) -> None:
    """Print bastion's version and the Python it runs on."""
    info = {"bastion": __version__, "python": sys.version.split()[0]}
    emit(info, as_json, lambda: console.print(f"bastion {__version__} (Python {info['python']})"))


@app.command("check-config")
@handles_errors
def check_config(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Validate the configuration (file + BASTION_* environment) without starting anything.

    Also loads the master key (secrets.master_key / master_key_file) the way serve
    does, so a key serve would refuse fails here with the same message.
    """
    from bastion.crypto.errors import MasterKeyError
    from bastion.runtime import check_keyring
    from bastion.settings import SettingsError, development_defaults, redact_url

    settings = _settings(config)
    try:
        check_keyring(settings)
    except MasterKeyError as error:
        raise SettingsError(error.detail) from None
    report = {
        "valid": True,
        "config": str(config) if config else None,
        "env": settings.env,
        "issuer": settings.issuer_url,
        "listen": f"{settings.listen.host}:{settings.listen.port}",
        "tls": settings.tls.mode,
        "storage": redact_url(settings.storage_url),
        "shared": redact_url(settings.shared.url),
        "routes": [route.name for route in settings.routes],
        "development_defaults": development_defaults(settings),
    }

    def human() -> None:
        console.print(
            f"[green]✓[/] configuration is valid ({report['config'] or 'built-in defaults'})"
        )
        console.print(f"  env       {report['env']}")
        console.print(f"  issuer    {report['issuer']}")
        console.print(f"  listen    {report['listen']} (tls: {report['tls']})")
        console.print(f"  storage   {report['storage']}")
        console.print(f"  shared    {report['shared']}")
        console.print(f"  routes    {', '.join(report['routes']) or '(none)'}")
        for line in report["development_defaults"]:
            console.print(f"  [yellow]development default:[/] {line}")

    emit(report, as_json, human)


# ---------------------------------------------------------------------------
# serve


@app.command()
@handles_errors
def serve(
    config: Path | None = ConfigOption,
    demo: bool = typer.Option(
        False, "--demo", help="Also start the built-in echo upstream behind a public /demo route."
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
    settings = _settings(config, overrides, flags)

    from bastion.observability.logs import configure_logging

    configure_logging(settings.logging.level, settings.logging.format)
    run(_serve(settings, as_json, reload=lambda: _settings(config, overrides, flags)))


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


# ---------------------------------------------------------------------------
# migrate


@app.command()
@handles_errors
def migrate(
    config: Path | None = ConfigOption,
    status: bool = typer.Option(
        False, "--status", help="Only show the current and pending revisions; change nothing."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Bring the database schema to this bastion's version (Alembic migrations)."""
    from bastion.settings import redact_url
    from bastion.storage import HEAD_REVISION, current_revision, pending_revisions
    from bastion.storage import migrate as do_migrate

    settings = _settings(config)
    url = settings.storage_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def work() -> dict[str, Any]:
        if status:
            return {
                "database": redact_url(url),
                "current": await current_revision(url),
                "head": HEAD_REVISION,
                "pending": await pending_revisions(url),
            }
        applied = await do_migrate(url)
        return {"database": redact_url(url), "applied": applied, "current": HEAD_REVISION}

    result = run(work())

    def human() -> None:
        if status:
            pending = result["pending"]
            console.print(f"database  {result['database']}")
            console.print(f"current   {result['current'] or '(empty)'}")
            console.print(f"head      {result['head']}")
            console.print(f"pending   {', '.join(pending) if pending else 'none — up to date'}")
        elif result["applied"]:
            console.print(
                f"[green]✓[/] applied {len(result['applied'])} migration(s): "
                f"{', '.join(result['applied'])}; schema at {result['current']}"
            )
        else:
            console.print(f"[green]✓[/] schema already at {result['current']}; nothing to do")

    emit(result, as_json, human)


# ---------------------------------------------------------------------------
# secrets


secrets_app = typer.Typer(
    help="Secrets at rest: the master key encrypting signing keys, TOTP seeds, webhook secrets.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("rotate-master-key")
@handles_errors
def rotate_master_key(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Generate a new master key and re-wrap every stored secret under it.

    Crash-safe: the key file first holds the new key and the old one, every
    sealed value is re-wrapped in one database transaction, then the old key is
    dropped from the file. Needs the master key to be a file (secrets.master_key_file
    or the development default), not an environment value.
    """
    from bastion.secrets_rotation import rotate_master_key as do_rotate

    settings = _settings(config)
    result = run(do_rotate(settings))

    def human() -> None:
        console.print(
            f"[green]✓[/] master key rotated: {result['old_key_ids']} → {result['new_key_id']}; "
            f"{result['rewrapped']} stored secret(s) re-wrapped; key file {result['key_file']}"
        )

    emit(result, as_json, human)


_KEY_FILE_ARGUMENT = typer.Argument(
    ...,
    help="Where to write the new master key file (e.g. /etc/bastion/master.key); must not exist.",
)


@secrets_app.command("init-master-key")
@handles_errors
def init_master_key(path: Path = _KEY_FILE_ARGUMENT, as_json: bool = JsonOption) -> None:
    """Create a master key file for production: one new key, mode 0600, never overwriting.

    Point secrets.master_key_file at it (every node of a cluster uses the same file, as
    it uses the same api_keys.pepper) and back it up: the secrets sealed under it cannot
    be opened without it. The key itself is never printed, only its public id.
    """
    from bastion.crypto.envelope import create_keyring_file

    keyring = create_keyring_file(path)
    result = {"key_file": str(path), "key_id": keyring.primary.key_id}

    def human() -> None:
        console.print(
            f"[green]✓[/] master key {result['key_id']} written to {path} (mode 0600); set "
            f"secrets.master_key_file: {path} on every node and back the file up"
        )

    emit(result, as_json, human)


# ---------------------------------------------------------------------------
# The command groups, filled by the modules imported at the end, so `bastion --help`
# shows the whole tree.


def _group(name: str, help_text: str) -> typer.Typer:
    group = typer.Typer(help=help_text, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


clients_app = _group("clients", "OAuth 2.0 clients: create, list, rotate secrets, disable.")
users_app = _group("users", "User accounts and passwords: create, list, disable, reset, delete.")
keys_app = _group("keys", "API keys: create, list, rotate with grace, revoke.")
signing_keys_app = _group("signing-keys", "Token signing keys: list, rotate, retire.")
limits_app = _group("limits", "Per-API-key rate limits: current usage, runtime overrides.")
audit_app = _group("audit", "The tamper-evident audit log: search, tail, verify.")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="bastion")
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)


from bastion.cli import audit as _audit  # noqa: E402,F401
from bastion.cli import clients as _clients  # noqa: E402,F401
from bastion.cli import doctor as _doctor  # noqa: E402,F401
from bastion.cli import keys as _keys  # noqa: E402,F401
from bastion.cli import limits as _limits  # noqa: E402,F401
from bastion.cli import routes as _routes  # noqa: E402,F401
from bastion.cli import signing_keys as _signing_keys  # noqa: E402,F401
from bastion.cli import users as _users  # noqa: E402,F401
