"""``bastion audit …``: search, follow, verify and prune the audit log.

Commands read the configured database directly (beside a serving bastion or
without one). Every value shown is encoded again for the terminal
(``audit/sanitize.py``) — a record written by other means cannot drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from bastion.cli.options import flag_option, parse_moment
from bastion.cli.output import (
    EXIT_ERROR,
    CommandArgumentsError,
    ConfigOption,
    JsonOption,
    console,
    emit,
)
from bastion.cli.running import handles_errors, read_settings, run

# Every `bastion` call (--help too) loads the command modules; the stores and services they
# drive load when a command runs.
if TYPE_CHECKING:
    from bastion.settings import Settings
    from bastion.storage import AuditEvent, Database

audit_app = typer.Typer(
    help="The tamper-evident audit log: search, tail, verify.",
    no_args_is_help=True,
)

T = TypeVar("T")

SinceOption = flag_option(
    "--since", "Only events at or after this: a duration ago (15m, 24h, 7d) or an ISO 8601 time."
)
UntilOption = flag_option("--until", "Only events before this: a duration ago or an ISO 8601 time.")


def _with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the database (migrating SQLite, as ``serve`` does), run ``work``, close it."""
    from bastion.runtime import ensure_data_dir
    from bastion.storage import Database, migrate

    async def main() -> T:
        url = settings.storage_url
        if url.startswith("sqlite"):
            if settings.storage.url is None:
                ensure_data_dir(settings.data_dir)
            await migrate(url)
        db = await Database.connect(url, pool_size=2)
        try:
            if not url.startswith("sqlite"):
                await db.check_schema()
            return await work(db)
        finally:
            await db.close()

    return run(main())


def _safe(value: object, limit: int = 512) -> str:
    """``value`` as text fit for a terminal: encoded, capped, rich markup escaped."""
    from rich.markup import escape

    from bastion.audit.sanitize import for_display

    return escape(for_display("-" if value is None else str(value), limit))


_MAX_FILTER = 255
# The columns of _line (the rest of a line is labelled: route=, req=, ua=, then data).
_HEADER = (
    "[bold]"
    + "  ".join(
        ("time (UTC)", "node#seq", "type", "outcome", "reason", "who", "ip", "route= req= ua= data")
    )
    + "[/]"
)


def _line(event: AuditEvent) -> str:
    from bastion.audit.chain import timestamp

    who = event.key_id and f"key:{event.key_id}"
    who = who or (event.client_id and f"client:{event.client_id}")
    who = who or (event.subject and f"sub:{event.subject}") or "-"
    colour = {"success": "green", "denied": "red", "failure": "red"}.get(event.outcome, "blue")
    parts = [
        timestamp(event.occurred_at),
        f"{_safe(event.node_id, 64)}#{event.seq}",
        _safe(event.type, 64),
        f"[{colour}]{_safe(event.outcome, 32)}[/]",
        _safe(event.reason, 64),
        _safe(who, 128),
        _safe(event.ip, 64),
        f"route={_safe(event.route, 64)}",
    ]
    if event.request_id:
        parts.append(f"req={_safe(event.request_id, 64)}")
    if event.user_agent:
        parts.append(f"ua={_safe(event.user_agent, 128)}")
    if event.data:
        import orjson

        parts.append(_safe(orjson.dumps(event.data).decode(), 512))
    return "  ".join(parts)


@audit_app.command("search")
@handles_errors
def search(
    key: str | None = flag_option("--key", "Only events of this API key id."),
    client: str | None = flag_option("--client", "Only events of this OAuth client id."),
    subject: str | None = flag_option("--subject", "Only events of this subject (user)."),
    route: str | None = flag_option("--route", "Only events on this gateway route."),
    type: str | None = flag_option("--type", "Only this event type (gateway.denied)."),
    outcome: str | None = flag_option(
        "--outcome", "Only this outcome (success, failure, denied, info)."
    ),
    reason: str | None = flag_option("--reason", "Only this reason code (invalid_token, …)."),
    request_id: str | None = flag_option("--request-id", "Only events of this request id."),
    ip: str | None = flag_option("--ip", "Only events from this client IP address."),
    since: str | None = SinceOption,
    until: str | None = UntilOption,
    node: str | None = flag_option("--node", "Only this node's events."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Events per page."),
    cursor: str | None = flag_option(
        "--cursor", "Continue after a previous page (its next_cursor)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Search the audit log, newest first; every filter given must match (exact values)."""
    from bastion.audit.views import event_view

    settings = read_settings(config)
    now = datetime.now(UTC)
    start = parse_moment(since, "--since", now)
    end = parse_moment(until, "--until", now)
    flags = {
        "--key": key,
        "--client": client,
        "--subject": subject,
        "--route": route,
        "--type": type,
        "--outcome": outcome,
        "--reason": reason,
        "--request-id": request_id,
        "--ip": ip,
        "--node": node,
    }
    for flag, value in flags.items():
        if value is not None and len(value) > _MAX_FILTER:
            raise CommandArgumentsError(f"{flag}: at most {_MAX_FILTER} characters")

    async def work(db: Database) -> Any:
        return await db.audit.search(
            since=start,
            until=end,
            key_id=key,
            client_id=client,
            subject=subject,
            route=route,
            type=type,
            outcome=outcome,
            reason=reason,
            request_id=request_id,
            ip=ip,
            node_id=node,
            limit=limit,
            cursor=cursor,
        )

    page = _with_db(settings, work)

    def human() -> None:
        if not page.items:
            console.print("no audit events match")
            return
        console.print(_HEADER)
        for event in page.items:
            console.print(_line(event))
        if page.next_cursor:
            console.print(f"more: --cursor {page.next_cursor}")

    emit(
        {"items": [event_view(e) for e in page.items], "next_cursor": page.next_cursor},
        as_json,
        human,
    )


@audit_app.command("tail")
@handles_errors
def tail(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events."),
    lines: int = typer.Option(20, "--lines", "-n", min=0, max=1000, help="Events shown first."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between polls."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the latest events, oldest first; -f keeps printing new ones (--json: JSON lines)."""
    from bastion.audit.views import event_view

    settings = read_settings(config)

    def show(event: AuditEvent) -> None:
        if as_json:
            emit(event_view(event), True, event=True)
        else:
            console.print(_line(event))

    async def work(db: Database) -> None:
        last_id = 0
        if not as_json:
            console.print(_HEADER)
        if lines:
            page = await db.audit.search(limit=lines)
            for event in reversed(page.items):
                show(event)
        newest = await db.audit.search(limit=1)
        if newest.items and newest.items[0].id is not None:
            last_id = newest.items[0].id
        if not follow:
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            page = await db.audit.search(cursor=str(last_id), newest_first=False, limit=500)
            for event in page.items:
                show(event)
                last_id = event.id if event.id is not None else last_id
            if page.next_cursor is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)

    _with_db(settings, work)


@audit_app.command("verify")
@handles_errors
def verify(
    node: str | None = typer.Option(None, "--node", help="Verify only this node's chain."),
    reanchor: bool = typer.Option(
        False,
        "--reanchor",
        help="Sign the checkpoints written before bastion signed them (they fail verification "
        "until then), if every chain verifies trusting them. Run it once after upgrading.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Check every hash chain and checkpoint: exit 0 if intact, else 1 naming each problem.

    Checkpoints (where pruning cut a chain) must carry a valid MAC under a key derived
    from the master key; one that does not is reported and never trusted.
    """
    from bastion.audit.chain import checkpoint_authenticator, inspect
    from bastion.audit.chain import reanchor as do_reanchor

    if reanchor and node is not None:
        raise CommandArgumentsError("--reanchor verifies every chain: leave out --node")
    settings = read_settings(config)
    authenticator = checkpoint_authenticator(_keyring(settings))
    signed: int | None = None
    if reanchor:
        report, signed = _with_db(
            settings, lambda db: do_reanchor(db.audit, authenticator=authenticator)
        )
    else:
        report = _with_db(
            settings, lambda db: inspect(db.audit, authenticator=authenticator, node_id=node)
        )
    doc = report.to_dict()
    if signed is not None:
        doc["reanchored"] = signed

    def human() -> None:
        if report.intact:
            console.print(
                f"[green]✓[/] audit log intact: {report.records} record(s) in "
                f"{len(report.nodes)} chain(s)"
            )
            for summary in report.nodes:
                anchored = f", continues checkpoint seq {summary.anchor_seq}" * bool(
                    summary.anchor_seq
                )
                console.print(
                    f"  {_safe(summary.node_id, 128)}: {summary.records} record(s), "
                    f"last seq {summary.last_seq or summary.anchor_seq}{anchored}"
                )
            if signed is not None:
                console.print(f"[green]✓[/] {signed} unsigned checkpoint(s) signed")
            return
        console.print(f"[bold red]✗[/] audit log tampered with: {len(report.findings)} finding(s)")
        for finding in report.findings:
            console.print(f"  {_safe(str(finding), 1024)}")
        if reanchor:
            console.print("  nothing was signed: --reanchor signs only a log that verifies")

    if not report.intact:
        doc["error"] = "audit_chain_broken"
    emit(doc, as_json, human)
    if not report.intact:
        raise typer.Exit(EXIT_ERROR)


def _keyring(settings: Settings) -> Any:
    """The master keyring (checkpoint MACs are made under a key derived from it)."""
    from bastion.runtime import ensure_data_dir, open_keyring, uses_data_dir

    if uses_data_dir(settings):
        ensure_data_dir(settings.data_dir)
    return open_keyring(settings)


@audit_app.command("prune")
@handles_errors
def prune(
    before: str | None = flag_option(
        "--before",
        "Delete records older than this: a duration ago (90d) or an ISO 8601 time "
        "(default: audit.retention).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete old records, keeping a checkpoint per chain so `bastion audit verify` still passes."""
    settings = read_settings(config)
    now = datetime.now(UTC)
    cutoff = parse_moment(before, "--before", now)
    if cutoff is None:
        retention = settings.audit.retention
        if retention is None:
            raise CommandArgumentsError(
                "audit.retention is none (keep everything) — give --before to prune anyway"
            )
        cutoff = now - timedelta(seconds=retention)
    from bastion.audit.chain import checkpoint_signer

    sign = checkpoint_signer(_keyring(settings))
    checkpoints = _with_db(settings, lambda db: db.audit.prune_before(cutoff, sign=sign))
    from bastion.audit.chain import timestamp

    doc = {
        "before": timestamp(cutoff),
        "pruned": sum(c.pruned for c in checkpoints),
        "checkpoints": [
            {"node_id": c.node_id, "seq": c.seq, "hash": c.hash, "pruned": c.pruned}
            for c in checkpoints
        ],
    }

    def human() -> None:
        if not checkpoints:
            console.print(f"nothing to prune before {doc['before']}")
            return
        console.print(f"[green]✓[/] pruned {doc['pruned']} record(s) before {doc['before']}")
        for c in checkpoints:
            console.print(
                f"  {_safe(c.node_id, 128)}: {c.pruned} record(s), checkpoint at seq {c.seq}"
            )

    emit(doc, as_json, human)
