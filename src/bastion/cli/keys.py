"""``bastion keys …``: manage API keys from the command line.

Commands work on the configured database directly; every running server hears
of each change through the database's change feed within a second
(``storage/feed.py``), at once through Redis where configured. A
key is printed once, by ``create`` and ``rotate``, and never again: listings
show only its non-secret display prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import typer

from bastion.audit.lifecycle import spec_fields
from bastion.cli import credentials as common
from bastion.cli.options import parse_duration_option, parse_moment
from bastion.cli.output import CommandArgumentsError, ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors

# Every `bastion` call (--help too) loads the command modules; the stores and services they
# drive load when a command runs.
if TYPE_CHECKING:
    from bastion.apikeys.operations import ApiKeyOperations, StateChange
    from bastion.cli.context import Stores
    from bastion.credentials.lifecycle import ChangeRecorder


def _operations(stores: Stores, recorder: ChangeRecorder) -> ApiKeyOperations:
    from bastion.apikeys import ApiKeyService
    from bastion.apikeys.operations import ApiKeyOperations

    return ApiKeyOperations(ApiKeyService(stores.db, stores.settings, stores.shared), recorder)


keys_app = typer.Typer(
    help="API keys: create, list, rotate with grace, revoke.",
    no_args_is_help=True,
)

_SHOWN_ONCE: Final = common.ShownOnce(
    "key",
    "API key",
    "This is the only time the API key is shown: store it now (e.g. in your secret manager).",
)

KeyIdArgument = typer.Argument(
    ...,
    metavar="KEY",
    help="The key's id or its display prefix (bst_…, as `bastion keys list` shows it).",
)
OwnerTypeOption = common.flag_option("--owner-type", "user or client (with --owner-id).")
OwnerIdOption = common.flag_option("--owner-id", "Id of the owning user or client.")
ScopeOption = common.flag_option("--scope", "Granted scope (repeatable).")
RouteOption = common.flag_option(
    "--route", "Gateway route (or audience) the key may call (repeatable; none: any route)."
)
ExpiresOption = common.flag_option(
    "--expires",
    "Expiry: a duration from now (30d, 12h, 3600) or an ISO 8601 date/time "
    "(UTC unless it carries an offset).",
)
IpAllowOption = common.flag_option(
    "--ip-allow", "Address or CIDR the key may be used from (repeatable; none: any address)."
)
RateLimitOption = common.flag_option(
    "--rate-limit", "Per-key rate limit such as 100/minute (repeatable)."
)
MetadataOption = common.flag_option("--metadata", "Free-form metadata as key=value (repeatable).")


# The flag (or argument) of each ApiKeySpec field, for errors: `--rate-limit: …`.
_FLAGS: Final = {
    "name": "NAME",
    "owner_type": "--owner-type",
    "owner_id": "--owner-id",
    "scopes": "--scope",
    "routes": "--route",
    "expires_at": "--expires",
    "rate_limits": "--rate-limit",
    "ip_allow": "--ip-allow",
    "metadata": "--metadata",
    "grace": "--grace",
}


def _parse_expires(value: str | None, now: datetime) -> datetime | None:
    """``--expires``: a duration from ``now`` or an ISO 8601 date/time."""
    return parse_moment(value, "--expires", now, direction="ahead")


def _parse_metadata(items: list[str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CommandArgumentsError(f"--metadata {item[:40]!r}: write it as key=value")
        metadata[name] = value
    return metadata


def _rate_limits(rates: list[str] | None) -> list[dict[str, Any]]:
    return [{"rate": rate.strip()} for rate in rates or ()]


def _print_key(doc: dict[str, Any]) -> None:
    def items(values: list[Any]) -> str:
        return ", ".join(str(v) for v in values) if values else "-"

    colour = "green" if doc["status"] in ("active", "grace") else "red"
    console.print(f"[bold]{doc['name']}[/]  {doc['id']}  ([{colour}]{doc['status']}[/])")
    console.print(f"  prefix        {doc['prefix']}…")
    owner = f"{doc['owner_type']}:{doc['owner_id']}" if doc["owner_type"] else "-"
    console.print(f"  owner         {owner}")
    console.print(f"  scopes        {items(doc['scopes'])}")
    console.print(f"  routes        {items(doc['routes']) if doc['routes'] else 'any'}")
    console.print(f"  expires       {doc['expires_at'] or 'never'}")
    console.print(f"  rate limits   {items([r.get('rate') for r in doc['rate_limits']])}")
    console.print(f"  ip allow      {items(doc['ip_allow']) if doc['ip_allow'] else 'any'}")
    if doc["metadata"]:
        console.print(f"  metadata      {items([f'{k}={v}' for k, v in doc['metadata'].items()])}")
    if doc["rotated_from"]:
        console.print(f"  rotated from  {doc['rotated_from']}")
    if doc["grace_until"]:
        console.print(f"  works until   {doc['grace_until']} (rotated)")
    if doc["revoked_at"]:
        console.print(f"  revoked       {doc['revoked_at']}")
    last = doc["last_used_at"]
    used = f"{last} from {doc['last_used_ip'] or '?'}" if last else "-"
    console.print(f"  last used     {used}")
    console.print(f"  created       {doc['created_at']}")


_KEYS: Final = common.CredentialCommands(
    noun="API key", operations=_operations, flags=_FLAGS, show=_print_key, shown_once=_SHOWN_ONCE
)


@keys_app.command("create")
@handles_errors
def create(
    name: str = typer.Argument(..., metavar="NAME", help="Human-readable name of the key."),
    owner_type: str | None = OwnerTypeOption,
    owner_id: str | None = OwnerIdOption,
    scope: list[str] | None = ScopeOption,
    route: list[str] | None = RouteOption,
    expires: str | None = ExpiresOption,
    ip_allow: list[str] | None = IpAllowOption,
    rate_limit: list[str] | None = RateLimitOption,
    metadata: list[str] | None = MetadataOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key and print it (shown only this once)."""
    from bastion.apikeys import ApiKeySpec

    spec = ApiKeySpec(
        name=name,
        owner_type=owner_type,
        owner_id=owner_id,
        scopes=scope or (),
        routes=route or (),
        expires_at=_parse_expires(expires, datetime.now(UTC)),
        rate_limits=_rate_limits(rate_limit),
        ip_allow=ip_allow or (),
        metadata=_parse_metadata(metadata),
    )

    doc = _KEYS.operate(lambda ops: ops.create(spec, spec_fields(spec)), config)
    _KEYS.emit(doc, as_json, "[green]✓[/] API key created", secret=True)


@keys_app.command("list")
@handles_errors
def list_keys(
    owner_type: str | None = OwnerTypeOption,
    owner_id: str | None = OwnerIdOption,
    limit: int = common.limit_option("Keys"),
    cursor: str | None = common.CursorOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List API keys (by display prefix; a key itself is never shown again)."""

    result = _KEYS.operate(
        lambda ops: ops.list(owner_type=owner_type, owner_id=owner_id, limit=limit, cursor=cursor),
        config,
    )

    def table() -> Any:
        from rich import box
        from rich.table import Table

        # Compact: ids are long; `bastion keys show ID` has everything else.
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("id", no_wrap=True)
        table.add_column("prefix", no_wrap=True)
        table.add_column("name", overflow="fold", ratio=1)
        table.add_column("status", no_wrap=True)
        table.add_column("expires", no_wrap=True)
        for doc in result["items"]:
            table.add_row(
                doc["id"],
                doc["prefix"] + "…",
                doc["name"],
                doc["status"],
                (doc["expires_at"] or "never")[:10],
            )
        return table

    empty = "no API keys — create one with `bastion keys create NAME`"
    emit(result, as_json, lambda: common.print_page(result, empty, table))


@keys_app.command("show")
@handles_errors
def show(
    key_id: str = KeyIdArgument,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one API key (by id or display prefix)."""

    async def work(ops: ApiKeyOperations) -> dict[str, Any]:
        return await ops.show(await ops.resolve(key_id))

    _KEYS.emit(_KEYS.operate(work, config), as_json)


@keys_app.command("update")
@handles_errors
def update(
    key_id: str = KeyIdArgument,
    name: str | None = common.flag_option("--name", "New name."),
    scope: list[str] | None = ScopeOption,
    route: list[str] | None = RouteOption,
    expires: str | None = ExpiresOption,
    ip_allow: list[str] | None = IpAllowOption,
    rate_limit: list[str] | None = RateLimitOption,
    metadata: list[str] | None = MetadataOption,
    clear_scopes: bool = typer.Option(False, "--clear-scopes", help="Grant no scopes."),
    clear_routes: bool = typer.Option(False, "--clear-routes", help="Allow any route."),
    no_expiry: bool = typer.Option(False, "--no-expiry", help="Remove the expiry."),
    clear_ip_allow: bool = typer.Option(False, "--clear-ip-allow", help="Allow any address."),
    clear_rate_limits: bool = typer.Option(
        False, "--clear-rate-limits", help="Remove the per-key rate limits."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Change an API key. Repeatable options replace the whole list they set; --metadata
    replaces all metadata."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    pairs: list[tuple[str, list[Any] | None, bool, str, str]] = [
        ("scopes", scope, clear_scopes, "--scope", "--clear-scopes"),
        ("routes", route, clear_routes, "--route", "--clear-routes"),
        ("ip_allow", ip_allow, clear_ip_allow, "--ip-allow", "--clear-ip-allow"),
        (
            "rate_limits",
            _rate_limits(rate_limit) or None,
            clear_rate_limits,
            "--rate-limit",
            "--clear-rate-limits",
        ),
    ]
    common.list_changes(changes, pairs)
    if expires is not None and no_expiry:
        raise CommandArgumentsError("give either --expires or --no-expiry, not both")
    if expires is not None:
        changes["expires_at"] = _parse_expires(expires, datetime.now(UTC))
    elif no_expiry:
        changes["expires_at"] = None
    if metadata:
        changes["metadata"] = _parse_metadata(metadata)

    async def work(ops: ApiKeyOperations) -> dict[str, Any]:
        return await ops.update(await ops.resolve(key_id), changes)

    _KEYS.update(changes, work, config, as_json)


@keys_app.command("rotate")
@handles_errors
def rotate(
    key_id: str = KeyIdArgument,
    grace: str | None = common.flag_option(
        "--grace",
        "How long the old key keeps working: seconds or e.g. 30m, 1h, 7d "
        "(default: api_keys.default_grace; 0 ends it now).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Issue a successor key (shown once); the old key works until the grace period ends."""
    grace_seconds = parse_duration_option(grace, "--grace")

    async def work(ops: ApiKeyOperations) -> dict[str, Any]:
        old_id = await ops.resolve(key_id)
        doc = await ops.rotate(old_id, grace_seconds)
        doc["previous"] = await ops.show(old_id)
        return doc

    doc = _KEYS.operate(work, config)
    previous, until = doc["previous"], doc["previous"]["grace_until"]
    done = f"[green]✓[/] API key rotated: {previous['prefix']}… works until {until}"
    _KEYS.emit(doc, as_json, done, secret=True)


def _change_state(change: StateChange) -> Callable[[str, Path | None], dict[str, Any]]:
    async def work(ops: ApiKeyOperations, ref: str) -> dict[str, Any]:
        return await ops.change_state(change, await ops.resolve(ref))

    return lambda ref, config: _KEYS.operate(lambda ops: work(ops, ref), config)


def _changed_message(verb: str) -> Callable[[dict[str, Any]], str]:
    return lambda doc: f"[green]✓[/] API key {doc['id']} ({doc['prefix']}…) {verb}"


_STATE_COMMANDS: Final[tuple[tuple[StateChange, str, str], ...]] = (
    ("revoke", "revoked", "Revoke an API key for good (every node refuses it within a second)."),
    ("disable", "disabled", "Disable an API key until it is enabled again."),
    ("enable", "enabled", "Enable a disabled API key again (not a revoked one)."),
)
for _change, _verb, _help in _STATE_COMMANDS:
    common.state_command(
        keys_app, _change, _help, KeyIdArgument, _change_state(_change), _changed_message(_verb)
    )


async def _delete(ops: ApiKeyOperations, ref: str) -> str:
    key_id = await ops.resolve(ref)
    await ops.delete(key_id)
    return key_id


common.delete_command(
    keys_app,
    "Delete an API key (prefer revoke: it keeps the record for the audit trail).",
    KeyIdArgument,
    refusal="deleting an API key cannot be undone: confirm with --yes",
    prompt=lambda ref: f"Delete API key {ref}?",
    run=lambda ref, config: _KEYS.operate(lambda ops: _delete(ops, ref), config),
    done=lambda key_id: f"[green]✓[/] API key {key_id} deleted",
)
