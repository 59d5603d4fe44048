"""``bastion clients …``: manage OAuth 2.0 clients from the command line.

Commands work on the configured database directly (a running server sees the
changes at once through the shared-state invalidation channel). A client
secret is printed once, by ``create`` and ``rotate-secret``, and never again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import typer

from bastion.audit.lifecycle import spec_fields
from bastion.cli.app import _settings, clients_app, handles_errors
from bastion.cli.options import parse_duration_option
from bastion.cli.output import (
    CommandArgumentsError,
    ConfigOption,
    JsonOption,
    confirm_destructive,
    console,
    emit,
    err_console,
)

if TYPE_CHECKING:
    from bastion.oauth.operations import ClientOperations, ClientStateChange

T = TypeVar("T")


_SECRET_WARNING = (
    "This is the only time the secret is shown: store it now (e.g. in your secret manager)."  # noqa: S105
)

TypeOption = typer.Option(
    "confidential", "--type", help="confidential (has a credential) or public (none)."
)
AuthMethodOption = typer.Option(
    None,
    "--auth-method",
    help="client_secret_basic (default for confidential), client_secret_post, "
    "private_key_jwt (needs --jwks-file) or none (public clients).",
    show_default=False,
)
GrantOption = typer.Option(
    None,
    "--grant",
    help="Allowed grant type (repeatable): client_credentials or "
    "urn:ietf:params:oauth:grant-type:token-exchange (authorization_code and refresh_token "
    "are not available in this version).",
    show_default=False,
)
ScopeOption = typer.Option(
    None,
    "--scope",
    help="Allowed scope (repeatable). bastion:introspect lets the client call /oauth2/introspect.",
    show_default=False,
)
AudienceOption = typer.Option(
    None,
    "--audience",
    help="Allowed audience / resource URI (repeatable); the first is the default.",
    show_default=False,
)
TtlOption = typer.Option(
    None,
    "--ttl",
    help="Access token lifetime in seconds (default: tokens.access_token_ttl).",
    show_default=False,
)
JwksOption = typer.Option(
    None,
    "--jwks-file",
    help="JSON file with the client's public keys (JWK Set) for private_key_jwt.",
    show_default=False,
)
RedirectOption = typer.Option(
    None, "--redirect-uri", help="Allowed redirect URI (repeatable).", show_default=False
)


# The flag (or argument) of each ClientSpec field, for errors: `--redirect-uri: …`.
_FLAGS: Final = {
    "name": "NAME",
    "client_type": "--type",
    "token_endpoint_auth_method": "--auth-method",
    "grant_types": "--grant",
    "scopes": "--scope",
    "audiences": "--audience",
    "access_token_ttl": "--ttl",
    "jwks": "--jwks-file",
    "redirect_uris": "--redirect-uri",
    "grace": "--grace",
}


def _operate(
    work: Callable[[ClientOperations], Awaitable[T]],
    config: Path | None,
    *,
    flags: Mapping[str, str] = _FLAGS,
) -> T:
    """Run ``work`` on the client operations (``cli/context.py``: events recorded afterwards).

    A field named by a ``ClientSpecError`` is reported as its flag (``flags``).
    """
    from bastion.cli.context import run_operations
    from bastion.oauth.clients import ClientService, ClientSpecError
    from bastion.oauth.operations import ClientOperations

    settings = _settings(config)
    return run_operations(
        settings,
        lambda stores, recorder: ClientOperations(
            ClientService(stores.db, settings, stores.shared), recorder
        ),
        work,
        spec_error=ClientSpecError,
        flags=flags,
    )


def _read_jwks(path: Path | None) -> dict[str, Any] | None:
    """The JWK Set in ``path``; raises ClientSpecError naming the file when unusable."""
    if path is None:
        return None
    import orjson

    from bastion.oauth.clients import ClientSpecError

    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ClientSpecError("jwks", f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ClientSpecError("jwks", f"{path} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ClientSpecError("jwks", f'{path} must hold a JWK Set: {{"keys": [...]}}')
    return data


def _print_client(doc: dict[str, Any]) -> None:
    def items(values: list[str]) -> str:
        return ", ".join(values) if values else "-"

    state = "[red]disabled[/]" if doc["disabled"] else "[green]enabled[/]"
    console.print(f"[bold]{doc['name']}[/]  {doc['client_id']}  ({state})")
    console.print(f"  type          {doc['client_type']}")
    console.print(f"  auth method   {doc['token_endpoint_auth_method']}")
    console.print(f"  grant types   {items(doc['grant_types'])}")
    console.print(f"  scopes        {items(doc['scopes'])}")
    console.print(f"  audiences     {items(doc['audiences'])}")
    ttl = doc["access_token_ttl"]
    console.print(f"  token ttl     {f'{ttl} s' if ttl is not None else 'server default'}")
    console.print(f"  redirect URIs {items(doc['redirect_uris'])}")
    if doc["jwks"] is not None:
        console.print(f"  jwks          {len(doc['jwks'].get('keys', []))} key(s)")
    for secret in doc["secrets"]:
        until = secret["expires_at"]
        note = f"works until {until}" if until is not None else "current"
        console.print(
            f"  secret        {secret['prefix']}…  created {secret['created_at']}  ({note})"
        )


def _print_secret(secret: str | None) -> None:
    if secret is None:
        return
    console.print(f"\n  client secret: [bold]{secret}[/]\n")
    err_console.print(f"[yellow]![/] {_SECRET_WARNING}")


@clients_app.command("create")
@handles_errors
def create(
    name: str = typer.Argument(..., metavar="NAME", help="Human-readable name of the client."),
    client_type: str = TypeOption,
    auth_method: str | None = AuthMethodOption,
    grant: list[str] | None = GrantOption,
    scope: list[str] | None = ScopeOption,
    audience: list[str] | None = AudienceOption,
    ttl: int | None = TtlOption,
    jwks_file: Path | None = JwksOption,
    redirect_uri: list[str] | None = RedirectOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a client and print its secret (shown only this once)."""
    from bastion.oauth.clients import ClientSpec

    if client_type not in ("confidential", "public"):
        raise CommandArgumentsError("--type must be 'confidential' or 'public'")
    spec = ClientSpec(
        name=name,
        client_type=client_type,  # type: ignore[arg-type]  # checked just above
        token_endpoint_auth_method=auth_method,
        grant_types=grant or None,
        scopes=scope or (),
        audiences=audience or (),
        access_token_ttl=ttl,
        redirect_uris=redirect_uri or (),
        jwks=_read_jwks(jwks_file),
    )

    doc = _operate(lambda ops: ops.create(spec, spec_fields(spec)), config)

    def human() -> None:
        console.print("[green]✓[/] client created")
        _print_client(doc)
        _print_secret(doc["client_secret"])

    emit(doc, as_json, human)


@clients_app.command("list")
@handles_errors
def list_clients(
    limit: int = typer.Option(100, "--limit", min=1, max=1000, help="Clients per page."),
    cursor: str | None = typer.Option(
        None, "--cursor", help="next_cursor of the previous page.", show_default=False
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List registered clients."""

    result = _operate(lambda ops: ops.list(limit=limit, cursor=cursor), config)

    def human() -> None:
        from rich.table import Table

        if not result["items"]:
            console.print("no clients — create one with `bastion clients create NAME`")
            return
        table = Table()
        table.add_column("client_id", no_wrap=True)
        for column in ("name", "type", "auth method", "grants", "scopes", "state"):
            table.add_column(column, overflow="fold")
        for doc in result["items"]:
            table.add_row(
                doc["client_id"],
                doc["name"],
                doc["client_type"],
                doc["token_endpoint_auth_method"],
                ", ".join(doc["grant_types"]),
                " ".join(doc["scopes"]),
                "disabled" if doc["disabled"] else "enabled",
            )
        console.print(table)
        if result["next_cursor"]:
            console.print(f"more: --cursor {result['next_cursor']}")

    emit(result, as_json, human)


@clients_app.command("show")
@handles_errors
def show(
    client_id: str = typer.Argument(..., metavar="CLIENT_ID", help="The client's id."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one client (secrets by prefix only)."""

    doc = _operate(lambda ops: ops.show(client_id), config)
    emit(doc, as_json, lambda: _print_client(doc))


@clients_app.command("update")
@handles_errors
def update(
    client_id: str = typer.Argument(..., metavar="CLIENT_ID", help="The client's id."),
    name: str | None = typer.Option(None, "--name", help="New name.", show_default=False),
    auth_method: str | None = AuthMethodOption,
    grant: list[str] | None = GrantOption,
    scope: list[str] | None = ScopeOption,
    audience: list[str] | None = AudienceOption,
    ttl: int | None = TtlOption,
    default_ttl: bool = typer.Option(
        False, "--default-ttl", help="Use the server's default token lifetime again."
    ),
    jwks_file: Path | None = JwksOption,
    redirect_uri: list[str] | None = RedirectOption,
    clear_scopes: bool = typer.Option(False, "--clear-scopes", help="Allow no scopes."),
    clear_audiences: bool = typer.Option(False, "--clear-audiences", help="Allow no audiences."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Change a client. Repeatable options replace the whole list they set."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if auth_method is not None:
        changes["token_endpoint_auth_method"] = auth_method
    if grant:
        changes["grant_types"] = grant
    if scope:
        changes["scopes"] = scope
    elif clear_scopes:
        changes["scopes"] = []
    if audience:
        changes["audiences"] = audience
    elif clear_audiences:
        changes["audiences"] = []
    if ttl is not None and default_ttl:
        raise CommandArgumentsError("give either --ttl or --default-ttl, not both")
    if ttl is not None or default_ttl:
        changes["access_token_ttl"] = ttl
    if jwks_file is not None:
        changes["jwks"] = _read_jwks(jwks_file)
    if redirect_uri:
        changes["redirect_uris"] = redirect_uri
    if not changes:
        raise CommandArgumentsError("nothing to change: give at least one option (see --help)")

    doc = _operate(
        lambda ops: ops.update(client_id, changes), config, flags={**_FLAGS, "name": "--name"}
    )

    def human() -> None:
        console.print(f"[green]✓[/] client updated: {', '.join(sorted(changes))}")
        _print_client(doc)

    emit(doc, as_json, human)


@clients_app.command("rotate-secret")
@handles_errors
def rotate_secret(
    client_id: str = typer.Argument(..., metavar="CLIENT_ID", help="The client's id."),
    grace: str | None = typer.Option(
        None,
        "--grace",
        help="How long the previous secret keeps working: seconds or e.g. 30m, 1h, 7d "
        "(default: tokens.client_secret_grace; 0 ends it now).",
        show_default=False,
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Issue a new client secret (shown once); the old one works until the grace period ends."""
    grace_seconds = parse_duration_option(grace, "--grace")

    doc = _operate(lambda ops: ops.rotate_secret(client_id, grace_seconds), config)

    def human() -> None:
        console.print("[green]✓[/] new client secret issued")
        _print_client(doc)
        _print_secret(doc["client_secret"])

    emit(doc, as_json, human)


def _state_command(name: ClientStateChange, verb: str, help_text: str) -> None:
    @clients_app.command(name, help=help_text)
    @handles_errors
    def command(
        client_id: str = typer.Argument(..., metavar="CLIENT_ID", help="The client's id."),
        config: Path | None = ConfigOption,
        as_json: bool = JsonOption,
    ) -> None:
        doc = _operate(lambda ops: ops.change_state(name, client_id), config)
        emit(doc, as_json, lambda: console.print(f"[green]✓[/] client {client_id} {verb}"))


_state_command(
    "disable", "disabled", "Disable a client: it can no longer authenticate or get tokens."
)
_state_command("enable", "enabled", "Enable a disabled client again.")


@clients_app.command("delete")
@handles_errors
def delete(
    client_id: str = typer.Argument(..., metavar="CLIENT_ID", help="The client's id."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a client with its secrets, grants and refresh tokens."""
    confirm_destructive(
        yes,
        as_json,
        refusal="deleting a client cannot be undone: confirm with --yes",
        prompt=f"Delete client {client_id} and everything issued to it?",
    )

    async def work(ops: ClientOperations) -> dict[str, str]:
        await ops.delete(client_id)
        return {"deleted": client_id}

    result = _operate(work, config)
    emit(result, as_json, lambda: console.print(f"[green]✓[/] client {client_id} deleted"))
