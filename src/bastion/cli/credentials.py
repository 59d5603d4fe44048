"""What ``bastion keys`` and ``bastion clients`` share: pages, secrets shown once, state, deletion.

Each command is a thin adapter over its credential's operations
(:mod:`bastion.apikeys.operations`, :mod:`bastion.oauth.operations`): it parses
its flags, runs one operation and renders the document. The commands the two
groups have alike are built here once: a state change (``revoke``,
``disable``, ``enable``) and ``delete``; so are the paging options, the page
printer and the once-only secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from bastion.cli.app import handles_errors
from bastion.cli.output import (
    ConfigOption,
    JsonOption,
    confirm_destructive,
    console,
    emit,
    err_console,
)

__all__ = [
    "CursorOption",
    "delete_command",
    "flag_option",
    "limit_option",
    "print_page",
    "print_secret",
    "state_command",
]

CursorOption: Any = typer.Option(
    None, "--cursor", help="next_cursor of the previous page.", show_default=False
)
#: A document of one credential, as its operations return it.
Document = dict[str, Any]


def flag_option(flag: str, help_text: str) -> Any:
    """An optional flag without a default shown (``None`` when not given; repeatable for lists)."""
    return typer.Option(None, flag, help=help_text, show_default=False)


def limit_option(items: str) -> Any:
    """``--limit``: ``items`` per page, 1 to 1000 (default 100)."""
    return typer.Option(100, "--limit", min=1, max=1000, help=f"{items} per page.")


def print_page(result: Mapping[str, Any], empty: str, table: Callable[[], Any]) -> None:
    """Print a page: ``empty`` when it has no items, else ``table()`` and the next cursor."""
    if not result["items"]:
        console.print(empty)
        return
    console.print(table())
    if result["next_cursor"]:
        console.print(f"more: --cursor {result['next_cursor']}")


def print_secret(label: str, secret: str | None, warning: str) -> None:
    """Print a secret shown this once (nothing for ``None``), and on stderr ``warning``."""
    if secret is None:
        return
    console.print(f"\n  {label}: [bold]{escape(secret)}[/]\n")
    err_console.print(f"[yellow]![/] {warning}")


def state_command(
    app: typer.Typer,
    name: str,
    help_text: str,
    argument: Any,
    run: Callable[[str, Path | None], Document],
    done: Callable[[Document], str],
) -> None:
    """Add ``name`` to ``app``: ``run(ref, config)`` changes the state; ``done(doc)`` says so."""

    @app.command(name, help=help_text)
    @handles_errors
    def command(
        ref: str = argument,
        config: Path | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        doc = run(ref, config)
        emit(doc, as_json, lambda: console.print(done(doc)))


def delete_command(
    app: typer.Typer,
    help_text: str,
    argument: Any,
    *,
    refusal: str,
    prompt: Callable[[str], str],
    run: Callable[[str, Path | None], str],
    done: Callable[[str], str],
) -> None:
    """Add ``delete`` to ``app``: confirmed (``--yes``), ``run(ref, config)`` deletes and
    returns the deleted id, printed with ``done(id)`` (``{"deleted": id}`` with --json)."""

    @app.command("delete", help=help_text)
    @handles_errors
    def delete(
        ref: str = argument,
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
        config: Path | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        confirm_destructive(yes, as_json, refusal=refusal, prompt=prompt(ref))
        result = {"deleted": run(ref, config)}
        emit(result, as_json, lambda: console.print(done(result["deleted"])))
