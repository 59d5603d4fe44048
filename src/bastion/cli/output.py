"""How every ``bastion`` command speaks: human output with rich, ``--json`` for machines.

Errors are one line on stderr (``error: …``) and a non-zero exit, or with
``--json`` one JSON object ``{"error": code, "detail": …}`` on stdout — never a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import orjson
import typer
from rich.console import Console

from bastion.errors import BastionError

console = Console(stderr=False, highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    envvar="BASTION_CONFIG",
    help="YAML configuration file (default: $BASTION_CONFIG, else built-in defaults).",
    show_default=False,
)

EXIT_ERROR = 1
EXIT_CONFIG = 2


class CommandArgumentsError(BastionError):
    """A command line is incomplete or contradictory."""

    code = "invalid_arguments"
    status = 400
    title = "Invalid arguments"


def name_flags(error: BastionError, flags: Mapping[str, str]) -> BastionError:
    """``error`` with the field it names replaced by the command's flag.

    Services validate by field (``rate_limits: …``, the name the admin API uses);
    on the command line the user typed a flag, so a ``…SpecError`` whose ``field``
    is in ``flags`` is reported as ``--rate-limit: …``. Other errors are returned
    unchanged.
    """
    field = getattr(error, "field", None)
    if not isinstance(field, str):
        return error
    flag = flags.get(field)
    if flag is not None and error.detail.startswith(f"{field}: "):
        error.detail = f"{flag}: {error.detail[len(field) + 2 :]}"
        error.args = (error.detail,)
    return error


def confirm_destructive(yes: bool, as_json: bool, *, refusal: str, prompt: str) -> None:
    """Ask before an action that cannot be undone, unless ``--yes`` was given.

    Without a terminal (or with ``--json``) nobody can answer, so the command is
    refused with ``refusal`` instead. Raises ``CommandArgumentsError``, or
    ``typer.Abort`` when the user says no.
    """
    if yes:
        return
    if as_json or not sys.stdin.isatty():
        raise CommandArgumentsError(refusal)
    typer.confirm(prompt, abort=True)


def emit(
    data: Any, as_json: bool, human: Callable[[], None] | None = None, *, event: bool = False
) -> None:
    """Print ``data`` as JSON when asked, else call ``human`` (or pretty-print ``data``).

    ``event=True`` writes one compact JSON line (JSON Lines), for commands that
    stream events such as ``serve --json``; results are indented for reading.
    """
    if as_json:
        option = 0 if event else orjson.OPT_INDENT_2
        sys.stdout.write(orjson.dumps(data, default=str, option=option).decode())
        sys.stdout.write("\n")
        sys.stdout.flush()
    elif human is not None:
        human()
    else:
        console.print(data)


def fail(error: BastionError, as_json: bool) -> NoReturn:
    """Report ``error`` the way every command does, then exit non-zero."""
    from bastion.settings import SettingsError

    code = EXIT_CONFIG if isinstance(error, SettingsError) else EXIT_ERROR
    if as_json:
        doc: dict[str, Any] = {"error": error.code, "detail": error.detail}
        errors = getattr(error, "errors", None)
        if errors:
            doc["errors"] = list(errors)
        emit(doc, True)
    else:
        lines = list(getattr(error, "errors", None) or [error.detail])
        err_console.print(f"[bold red]error:[/] {_escape(lines[0])}")
        for line in lines[1:]:
            err_console.print(f"[bold red]error:[/] {_escape(line)}")
    raise typer.Exit(code)


def usage_error(error: Any, as_json: bool) -> None:
    """Report click's ``ClickException`` (unknown flag, bad value …) on one line.

    ``error: <click's message, naming the flag> (see `bastion … --help`)`` on
    stderr, or with ``--json`` ``{"error": "invalid_arguments", "detail": …}`` on
    stdout.
    """
    message = " ".join(error.format_message().split())
    ctx = getattr(error, "ctx", None)
    if as_json:
        emit({"error": CommandArgumentsError.code, "detail": message}, True)
        return
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    err_console.print(f"[bold red]error:[/] {_escape(message)}{_escape(hint)}")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
