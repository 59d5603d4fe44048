"""The ``bastion`` command tree: the root command, and where every command hangs on it.

Commands are thin: they load settings, call the packages that do the work and
print the result through :mod:`bastion.cli.output`. Each lives in a module of
its own with what it shares from :mod:`bastion.cli.running`; this module only
assembles them, in the order ``bastion --help`` lists them, so the tree a user
discovers with ``--help`` is the whole product's.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.core

# typer vendors click (typer._click): its usage errors are these classes, not click's.
from typer._click import exceptions as click_errors

from bastion.cli.audit import audit_app
from bastion.cli.clients import clients_app
from bastion.cli.doctor import doctor
from bastion.cli.info import check_config, version
from bastion.cli.keys import keys_app
from bastion.cli.limits import limits_app
from bastion.cli.migrate import migrate
from bastion.cli.output import err_console, usage_error
from bastion.cli.routes import routes_app
from bastion.cli.secrets import secrets_app
from bastion.cli.serve import serve
from bastion.cli.signing_keys import signing_keys_app
from bastion.cli.users import users_app

__all__ = ["app", "main"]


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

# The commands, then the groups: the order `bastion --help` lists them in.
app.command()(version)
app.command("check-config")(check_config)
app.command()(serve)
app.command()(migrate)
app.command()(doctor)
app.add_typer(secrets_app, name="secrets")
app.add_typer(clients_app, name="clients")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(signing_keys_app, name="signing-keys")
app.add_typer(limits_app, name="limits")
app.add_typer(audit_app, name="audit")
app.add_typer(routes_app, name="routes")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="bastion")
    except KeyboardInterrupt:  # pragma: no cover - interactive
        sys.exit(130)
