"""What ``bastion keys`` and ``bastion clients`` share: pages, secrets shown once, state, deletion.

Each command is a thin adapter over its credential's operations
(:mod:`bastion.apikeys.operations`, :mod:`bastion.oauth.operations`): it parses
its flags, runs one operation and renders the document. The commands the two
groups have alike are built here once: a state change (``revoke``,
``disable``, ``enable``) and ``delete``; so are the paging options, the page
printer and the once-only secret. :class:`CredentialCommands` holds what one
group's commands have in common: how they reach the operations, how a document
is shown, and the ``update`` every group runs the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import typer
from rich.markup import escape

from bastion.cli.options import flag_option
from bastion.cli.output import (
    CommandArgumentsError,
    ConfigOption,
    JsonOption,
    confirm_destructive,
    console,
    emit,
    err_console,
)
from bastion.cli.running import handles_errors, read_settings

if TYPE_CHECKING:
    from bastion.cli.context import Stores
    from bastion.credentials.lifecycle import ChangeRecorder

__all__ = [
    "CredentialCommands",
    "CursorOption",
    "ShownOnce",
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

Ops = TypeVar("Ops")
T = TypeVar("T")


def limit_option(items: str) -> Any:
    """``--limit``: ``items`` per page, 1 to 1000 (default 100)."""
    return typer.Option(100, "--limit", min=1, max=1000, help=f"{items} per page.")


def list_changes(
    changes: dict[str, Any], options: list[tuple[str, list[Any] | None, bool, str, str]]
) -> None:
    """Put each list an update sets into ``changes``: ``(member, values, clear, option,
    clear_option)`` — the values replace the list, ``clear`` empties it, and both at once
    is refused (which of the two the user meant cannot be guessed)."""
    for member, values, clear, option, clear_option in options:
        if values and clear:
            raise CommandArgumentsError(f"give either {option} or {clear_option}, not both")
        if values:
            changes[member] = values
        elif clear:
            changes[member] = []


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


@dataclass(frozen=True)
class ShownOnce:
    """Where a document holds a new secret (``member``), and how it is printed that once."""

    member: str
    label: str
    warning: str


@dataclass(frozen=True)
class CredentialCommands(Generic[Ops]):
    """What the commands of one credential group (``keys``, ``clients``) share.

    ``operations`` builds the group's operations on the opened stores; ``flags``
    names the flag (or argument) of each spec field, for errors; ``noun`` is what
    the messages call one credential; ``show`` prints a document; ``shown_once``
    says where a document with a new secret holds it.
    """

    operations: Callable[[Stores, ChangeRecorder], Ops]
    flags: Mapping[str, str]
    noun: str
    show: Callable[[Document], None]
    shown_once: ShownOnce

    def operate(
        self,
        work: Callable[[Ops], Awaitable[T]],
        config: Path | None,
        flags: Mapping[str, str] | None = None,
    ) -> T:
        """Run ``work`` on the operations (see ``cli/context.py``); spec errors named by flag."""
        from bastion.cli.context import run_operations

        return run_operations(
            read_settings(config), self.operations, work, self.flags if flags is None else flags
        )

    def emit(
        self, doc: Document, as_json: bool, done: str | None = None, *, secret: bool = False
    ) -> None:
        """Print ``doc``: after the line ``done``, and with its new secret when ``secret``."""

        def human() -> None:
            if done is not None:
                console.print(done)
            self.show(doc)
            if secret:
                once = self.shown_once
                print_secret(once.label, doc[once.member], once.warning)

        emit(doc, as_json, human)

    def update(
        self,
        changes: Mapping[str, Any],
        work: Callable[[Ops], Awaitable[Document]],
        config: Path | None,
        as_json: bool,
    ) -> None:
        """Run ``work``, the update of ``changes`` (refused when there are none), and print it."""
        if not changes:
            raise CommandArgumentsError("nothing to change: give at least one option (see --help)")
        # `update` renames with --name; NAME is the argument of `create`.
        doc = self.operate(work, config, flags={**self.flags, "name": "--name"})
        self.emit(doc, as_json, f"[green]✓[/] {self.noun} updated: {', '.join(sorted(changes))}")
