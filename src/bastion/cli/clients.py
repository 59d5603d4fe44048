"""``bastion clients …``: manage OAuth 2.0 clients from the command line.

Commands work on the configured database directly (a running server sees the
changes at once through the shared-state invalidation channel). A client
secret is printed once, by ``create`` and ``rotate-secret``, and never again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import typer

from bastion.audit.lifecycle import spec_fields
from bastion.cli import credentials as common
from bastion.cli.options import parse_duration_option
from bastion.cli.output import CommandArgumentsError, ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors

# Every `bastion` call (--help too) loads the command modules; the stores and services they
# drive load when a command runs.
if TYPE_CHECKING:
    from bastion.cli.context import Stores
    from bastion.credentials.lifecycle import ChangeRecorder
    from bastion.oauth.operations import ClientOperations, ClientStateChange


def _operations(stores: Stores, recorder: ChangeRecorder) -> ClientOperations:
    from bastion.oauth.clients import ClientService
    from bastion.oauth.operations import ClientOperations

    return ClientOperations(ClientService(stores.db, stores.settings, stores.shared), recorder)


clients_app = typer.Typer(
    help="OAuth 2.0 clients: create, list, rotate secrets, disable.",
    no_args_is_help=True,
)

_SHOWN_ONCE: Final = common.ShownOnce(
    "client_secret",
    "client secret",
    "This is the only time the secret is shown: store it now (e.g. in your secret manager).",
)

TypeOption = typer.Option(
    "confidential", "--type", help="confidential (has a credential) or public (none)."
)
AuthMethodOption = common.flag_option(
    "--auth-method",
    "client_secret_basic (default for confidential), client_secret_post, "
    "private_key_jwt (needs --jwks-file) or none (public clients).",
)
GrantOption = common.flag_option(
    "--grant",
    "Allowed grant type (repeatable): client_credentials or "
    "urn:ietf:params:oauth:grant-type:token-exchange (authorization_code and refresh_token "
    "are not available in this version).",
)
ScopeOption = common.flag_option(
    "--scope",
    "Allowed scope (repeatable). bastion:introspect lets the client call /oauth2/introspect.",
)
AudienceOption = common.flag_option(
    "--audience", "Allowed audience / resource URI (repeatable); the first is the default."
)
TtlOption = common.flag_option(
    "--ttl", "Access token lifetime in seconds (default: tokens.access_token_ttl)."
)
JwksOption = common.flag_option(
    "--jwks-file", "JSON file with the client's public keys (JWK Set) for private_key_jwt."
)
ClientIdArgument = typer.Argument(..., metavar="CLIENT_ID", help="The client's id.")
RedirectOption = common.flag_option("--redirect-uri", "Allowed redirect URI (repeatable).")
IdTokenAlgOption = common.flag_option(
    "--id-token-alg",
    "Algorithm of the client's ID tokens (id_token_signed_response_alg): one of "
    "signing_keys.id_token_algorithms, ES256 and RS256 by default (default: the first).",
)
BackchannelOption = common.flag_option(
    "--backchannel-logout-uri",
    "Where a logout token is posted when a session the client signed into ends "
    "(https; http only for a loopback host, in development).",
)
PostLogoutRedirectOption = common.flag_option(
    "--post-logout-redirect-uri",
    "Where /oauth2/logout may send the browser after signing it out (repeatable; exact match).",
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
    "id_token_signed_response_alg": "--id-token-alg",
    "post_logout_redirect_uris": "--post-logout-redirect-uri",
    "backchannel_logout_uri": "--backchannel-logout-uri",
    "grace": "--grace",
}


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
    if doc["post_logout_redirect_uris"]:
        console.print(f"  after logout  {items(doc['post_logout_redirect_uris'])}")
    if doc["backchannel_logout_uri"]:
        console.print(f"  backchannel   {doc['backchannel_logout_uri']}")
    if doc["jwks"] is not None:
        console.print(f"  jwks          {len(doc['jwks'].get('keys', []))} key(s)")
    alg = doc["id_token_signed_response_alg"]
    console.print(f"  id token alg  {alg if alg is not None else 'server default'}")
    for secret in doc["secrets"]:
        until = secret["expires_at"]
        note = f"works until {until}" if until is not None else "current"
        console.print(
            f"  secret        {secret['prefix']}…  created {secret['created_at']}  ({note})"
        )


_CLIENTS: Final = common.CredentialCommands(
    noun="client", operations=_operations, flags=_FLAGS, show=_print_client, shown_once=_SHOWN_ONCE
)


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
    id_token_alg: str | None = IdTokenAlgOption,
    post_logout_redirect_uri: list[str] | None = PostLogoutRedirectOption,
    backchannel_logout_uri: str | None = BackchannelOption,
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
        id_token_signed_response_alg=id_token_alg,
        post_logout_redirect_uris=post_logout_redirect_uri or (),
        backchannel_logout_uri=backchannel_logout_uri,
    )

    doc = _CLIENTS.operate(lambda ops: ops.create(spec, spec_fields(spec)), config)
    _CLIENTS.emit(doc, as_json, "[green]✓[/] client created", secret=True)


@clients_app.command("list")
@handles_errors
def list_clients(
    limit: int = common.limit_option("Clients"),
    cursor: str | None = common.CursorOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List registered clients."""

    result = _CLIENTS.operate(lambda ops: ops.list(limit=limit, cursor=cursor), config)

    def table() -> Any:
        from rich.table import Table

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
        return table

    empty = "no clients — create one with `bastion clients create NAME`"
    emit(result, as_json, lambda: common.print_page(result, empty, table))


@clients_app.command("show")
@handles_errors
def show(
    client_id: str = ClientIdArgument,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one client (secrets by prefix only)."""

    _CLIENTS.emit(_CLIENTS.operate(lambda ops: ops.show(client_id), config), as_json)


@clients_app.command("update")
@handles_errors
def update(
    client_id: str = ClientIdArgument,
    name: str | None = common.flag_option("--name", "New name."),
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
    id_token_alg: str | None = IdTokenAlgOption,
    post_logout_redirect_uri: list[str] | None = PostLogoutRedirectOption,
    clear_post_logout_redirect_uris: bool = typer.Option(
        False, "--clear-post-logout-redirect-uris", help="Allow no post-logout redirect."
    ),
    backchannel_logout_uri: str | None = BackchannelOption,
    no_backchannel_logout: bool = typer.Option(
        False, "--no-backchannel-logout", help="Post no logout tokens to the client any more."
    ),
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
    common.list_changes(
        changes,
        [
            ("scopes", scope, clear_scopes, "--scope", "--clear-scopes"),
            ("audiences", audience, clear_audiences, "--audience", "--clear-audiences"),
            (
                "post_logout_redirect_uris",
                post_logout_redirect_uri,
                clear_post_logout_redirect_uris,
                "--post-logout-redirect-uri",
                "--clear-post-logout-redirect-uris",
            ),
        ],
    )
    if ttl is not None and default_ttl:
        raise CommandArgumentsError("give either --ttl or --default-ttl, not both")
    if ttl is not None or default_ttl:
        changes["access_token_ttl"] = ttl
    if jwks_file is not None:
        changes["jwks"] = _read_jwks(jwks_file)
    if redirect_uri:
        changes["redirect_uris"] = redirect_uri
    if id_token_alg is not None:
        changes["id_token_signed_response_alg"] = id_token_alg
    if backchannel_logout_uri is not None and no_backchannel_logout:
        raise CommandArgumentsError(
            "give either --backchannel-logout-uri or --no-backchannel-logout, not both"
        )
    if backchannel_logout_uri is not None or no_backchannel_logout:
        changes["backchannel_logout_uri"] = backchannel_logout_uri
    _CLIENTS.update(changes, lambda ops: ops.update(client_id, changes), config, as_json)


@clients_app.command("rotate-secret")
@handles_errors
def rotate_secret(
    client_id: str = ClientIdArgument,
    grace: str | None = common.flag_option(
        "--grace",
        "How long the previous secret keeps working: seconds or e.g. 30m, 1h, 7d "
        "(default: tokens.client_secret_grace; 0 ends it now).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Issue a new client secret (shown once); the old one works until the grace period ends."""
    grace_seconds = parse_duration_option(grace, "--grace")

    doc = _CLIENTS.operate(lambda ops: ops.rotate_secret(client_id, grace_seconds), config)
    _CLIENTS.emit(doc, as_json, "[green]✓[/] new client secret issued", secret=True)


def _change_state(change: ClientStateChange) -> Callable[[str, Path | None], dict[str, Any]]:
    return lambda ref, config: _CLIENTS.operate(lambda ops: ops.change_state(change, ref), config)


def _changed_message(verb: str) -> Callable[[dict[str, Any]], str]:
    return lambda doc: f"[green]✓[/] client {doc['client_id']} {verb}"


_STATE_COMMANDS: Final[tuple[tuple[ClientStateChange, str, str], ...]] = (
    ("disable", "disabled", "Disable a client: it can no longer authenticate or get tokens."),
    ("enable", "enabled", "Enable a disabled client again."),
)
for _change, _verb, _help in _STATE_COMMANDS:
    common.state_command(
        clients_app,
        _change,
        _help,
        ClientIdArgument,
        _change_state(_change),
        _changed_message(_verb),
    )


async def _delete(ops: ClientOperations, client_id: str) -> str:
    await ops.delete(client_id)
    return client_id


common.delete_command(
    clients_app,
    "Delete a client with its secrets, grants and refresh tokens.",
    ClientIdArgument,
    refusal="deleting a client cannot be undone: confirm with --yes",
    prompt=lambda ref: f"Delete client {ref} and everything issued to it?",
    run=lambda ref, config: _CLIENTS.operate(lambda ops: _delete(ops, ref), config),
    done=lambda client_id: f"[green]✓[/] client {client_id} deleted",
)
