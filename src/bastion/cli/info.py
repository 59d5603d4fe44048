"""``bastion version`` and ``bastion check-config``: what this bastion is, and whether its
configuration holds."""

from __future__ import annotations

import sys
from pathlib import Path

from bastion import __version__
from bastion.cli.output import ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings

__all__ = ["check_config", "version"]


@handles_errors
def version(as_json: bool = JsonOption) -> None:
    """Print bastion's version and the Python it runs on."""
    info = {"bastion": __version__, "python": sys.version.split()[0]}
    emit(info, as_json, lambda: console.print(f"bastion {__version__} (Python {info['python']})"))


@handles_errors
def check_config(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Validate the configuration (file + BASTION_* environment) without starting anything.

    Also loads the master key (secrets.master_key / master_key_file) the way serve
    does, so a key serve would refuse fails here with the same message.
    """
    from bastion.crypto.errors import MasterKeyError
    from bastion.runtime import check_keyring
    from bastion.settings import SettingsError, development_defaults, redact_url

    settings = read_settings(config)
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
