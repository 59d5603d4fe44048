"""``bastion users …``: manage user accounts from the command line.

Commands work on the configured database directly; every running server hears
of each change through the change feed's ``users`` channel within a second
(``storage/feed.py``). A password is read from standard input
(``--password-stdin``), never from the command line, where other users of the
machine and the shell history could read it; it is never printed.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import typer

from bastion.cli import credentials as common
from bastion.cli.output import CommandArgumentsError, ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings

if TYPE_CHECKING:
    from bastion.cli.context import Stores
    from bastion.credentials.lifecycle import ChangeRecorder
    from bastion.users import UserOperations, UserStateChange

users_app = typer.Typer(
    help="User accounts and passwords: create, list, disable, reset, delete; the "
    "applications they consented to (consents, revoke-consent).",
    no_args_is_help=True,
)

T = TypeVar("T")

UserArgument = typer.Argument(..., metavar="USER", help="The user's id or username.")
PasswordStdinOption = typer.Option(
    False,
    "--password-stdin",
    help="Read the password from standard input (one line; asked twice on a terminal).",
)
EmailOption = common.flag_option("--email", "The user's email address.")
DisplayNameOption = common.flag_option("--display-name", "The name shown to people.")
RoleOption = common.flag_option("--role", "A role (repeatable): what routes' role rules check.")

# The flag (or argument) of each UserSpec field, for errors: `--email: …`.
_FLAGS: Final = {
    "username": "USERNAME",
    "email": "--email",
    "display_name": "--display-name",
    "roles": "--role",
}


def _operations(stores: Stores, recorder: ChangeRecorder) -> UserOperations:
    from bastion.users import UserOperations, UserService

    return UserOperations(UserService(stores.db, stores.settings), recorder)


def _operate(work: Callable[[UserOperations], Awaitable[T]], config: Path | None) -> T:
    """Run ``work`` on the operations (see ``cli/context.py``); spec errors named by flag."""
    from bastion.cli.context import run_operations

    return run_operations(read_settings(config), _operations, work, _FLAGS)


def _on_user(
    ref: str, config: Path | None, work: Callable[[UserOperations, str], Awaitable[T]]
) -> T:
    """Run ``work(ops, user_id)`` on the user named by ``ref`` (id or username)."""

    async def run(ops: UserOperations) -> T:
        return await work(ops, await ops.resolve(ref))

    return _operate(run, config)


def read_password() -> str:
    """The password on standard input: typed twice on a terminal, else its first line.

    Only the line break ending the input is removed: every other character,
    spaces included, is part of the password.
    """
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise CommandArgumentsError("the two passwords differ; run the command again")
        return first
    text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")


def _print_user(doc: dict[str, Any]) -> None:
    state = "[red]disabled[/]" if doc["disabled"] else "[green]enabled[/]"
    console.print(f"[bold]{doc['username']}[/]  {doc['id']}  ({state})")
    console.print(f"  email         {doc['email'] or '-'}")
    console.print(f"  display name  {doc['display_name'] or '-'}")
    console.print(f"  roles         {', '.join(doc['roles']) or '-'}")
    changed = doc["password_changed_at"]
    console.print(f"  password      {f'set {changed}' if doc['has_password'] else 'none'}")
    console.print(f"  created       {doc['created_at']}")


@users_app.command("create")
@handles_errors
def create(
    username: str = typer.Argument(..., metavar="USERNAME", help="What the user logs in with."),
    email: str | None = EmailOption,
    display_name: str | None = DisplayNameOption,
    role: list[str] | None = RoleOption,
    password_stdin: bool = PasswordStdinOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a user; with --password-stdin, with the password read from standard input."""
    from bastion.users import UserSpec

    spec = UserSpec(username, email=email, display_name=display_name or "", roles=tuple(role or ()))
    password = read_password() if password_stdin else None
    doc = _operate(lambda ops: ops.create(spec, password), config)

    def human() -> None:
        console.print("[green]✓[/] user created")
        _print_user(doc)
        if not doc["has_password"]:
            console.print(
                "  (no password: set one with `bastion users reset-password "
                f"{doc['username']} --password-stdin`)"
            )

    emit(doc, as_json, human)


#: The columns of `bastion users list` and what each shows of a user's document.
_LISTED: Final[tuple[tuple[str, Callable[[dict[str, Any]], str]], ...]] = (
    ("id", lambda doc: doc["id"]),
    ("username", lambda doc: doc["username"]),
    ("email", lambda doc: doc["email"] or "-"),
    ("roles", lambda doc: ", ".join(doc["roles"])),
    ("password", lambda doc: "set" if doc["has_password"] else "none"),
    ("state", lambda doc: "disabled" if doc["disabled"] else "enabled"),
)
_EMPTY: Final = "no users — create one with `bastion users create USERNAME --password-stdin`"


@users_app.command("list", help="List users in the order they were created.")
@handles_errors
def list_users(
    limit: int = common.limit_option("Users"),
    cursor: str | None = common.CursorOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    result = _operate(lambda ops: ops.list(limit=limit, cursor=cursor), config)

    def table() -> Any:
        from rich.table import Table

        table = Table(*(name for name, _ in _LISTED))
        for doc in result["items"]:
            table.add_row(*(cell(doc) for _, cell in _LISTED))
        return table

    emit(result, as_json, lambda: common.print_page(result, _EMPTY, table))


@users_app.command("show")
@handles_errors
def show(
    user: str = UserArgument, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Show one user (never the password or its hash)."""
    doc = _on_user(user, config, lambda ops, user_id: ops.show(user_id))
    emit(doc, as_json, lambda: _print_user(doc))


NewEmailOption = typer.Option(
    None, "--email", help="New email address (it becomes unverified; '' clears it)."
)
EmailVerifiedOption = typer.Option(
    None, "--email-verified/--email-unverified", help="Mark the email (un)verified."
)
NewRolesOption = typer.Option(
    None, "--role", help="The user's roles, replacing the current ones (repeatable)."
)
NoRolesOption = typer.Option(False, "--no-roles", help="Remove every role.")


@users_app.command("update")
@handles_errors
def update(
    user: str = UserArgument,
    email: str | None = NewEmailOption,
    verified: bool | None = EmailVerifiedOption,
    display_name: str | None = DisplayNameOption,
    role: list[str] | None = NewRolesOption,
    no_roles: bool = NoRolesOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Change a user's email, display name or roles (the username stays)."""
    if role and no_roles:
        raise CommandArgumentsError("give --role or --no-roles, not both")
    changes: dict[str, Any] = {}
    if email is not None:
        changes["email"] = email or None
    if verified is not None:
        changes["email_verified"] = verified
    if display_name is not None:
        changes["display_name"] = display_name
    if role or no_roles:
        changes["roles"] = list(role or ())
    if not changes:
        raise CommandArgumentsError(
            "nothing to change: give --email, --email-verified, --display-name, --role or "
            "--no-roles"
        )
    doc = _on_user(user, config, lambda ops, user_id: ops.update(user_id, changes))

    def human() -> None:
        console.print(f"[green]✓[/] user {doc['username']} updated ({', '.join(sorted(changes))})")
        _print_user(doc)

    emit(doc, as_json, human)


@users_app.command("reset-password")
@handles_errors
def reset_password(
    user: str = UserArgument,
    password_stdin: bool = PasswordStdinOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Set a new password, read from standard input (--password-stdin)."""
    if not password_stdin:
        raise CommandArgumentsError(
            "give the new password on standard input with --password-stdin, e.g. "
            "`bastion users reset-password alice --password-stdin < password.txt`"
        )
    password = read_password()
    doc = _on_user(user, config, lambda ops, user_id: ops.reset_password(user_id, password))
    emit(doc, as_json, lambda: console.print(f"[green]✓[/] password of {doc['username']} set"))


def _add_state_command(change: UserStateChange, verb: str, help_text: str) -> None:
    def run(ref: str, config: Path | None) -> dict[str, Any]:
        return _on_user(ref, config, lambda ops, user_id: ops.change_state(change, user_id))

    def done(doc: dict[str, Any]) -> str:
        return f"[green]✓[/] user {doc['username']} {verb}"

    common.state_command(users_app, change, help_text, UserArgument, run, done)


_add_state_command("disable", "disabled", "Disable a user: they can no longer log in.")
_add_state_command("enable", "enabled", "Enable a disabled user again.")


async def _delete(ops: UserOperations, user_id: str) -> str:
    await ops.delete(user_id)
    return user_id


common.delete_command(
    users_app,
    "Delete a user with their MFA credentials, consents and refresh tokens.",
    UserArgument,
    refusal="deleting a user cannot be undone: confirm with --yes",
    prompt=lambda ref: f"Delete user {ref} and everything that belongs to them?",
    run=lambda ref, config: _on_user(ref, config, _delete),
    done=lambda user_id: f"[green]✓[/] user {user_id} deleted",
)


@users_app.command("consents")
@handles_errors
def consents(
    user: str = UserArgument, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """List the applications (OAuth clients) the user consented to, with the scopes."""
    result = _on_user(user, config, lambda ops, user_id: ops.consents(user_id))

    def table() -> Any:
        from rich.table import Table

        table = Table("client", "scope", "given")
        for doc in result["items"]:
            table.add_row(doc["client_id"], doc["scope"], doc["created_at"])
        return table

    def human() -> None:
        if result["items"]:
            console.print(table())
        else:
            console.print("no consents")

    emit(result, as_json, human)


@users_app.command("revoke-consent")
@handles_errors
def revoke_consent(
    user: str = UserArgument,
    client: str = typer.Argument(..., metavar="CLIENT", help="The client's id."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke the user's consent to a client; that client's refresh tokens for the user end
    with it (and the access tokens they issued), and the next sign-in asks again."""
    result = _on_user(user, config, lambda ops, user_id: ops.revoke_consent(user_id, client))

    def human() -> None:
        count = result["refresh_tokens_revoked"]
        console.print(f"[green]✓[/] consent to {client} revoked ({count} refresh token(s) revoked)")

    emit(result, as_json, human)
