"""``bastion migrate``: bring the database schema to this bastion's version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from bastion.cli.output import ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings, run

__all__ = ["migrate"]

StatusOption = typer.Option(
    False, "--status", help="Only show the current and pending revisions; change nothing."
)


@handles_errors
def migrate(
    config: Path | None = ConfigOption, status: bool = StatusOption, as_json: bool = JsonOption
) -> None:
    """Bring the database schema to this bastion's version (Alembic migrations)."""
    from bastion.settings import redact_url
    from bastion.storage import HEAD_REVISION, current_revision, pending_revisions
    from bastion.storage import migrate as do_migrate

    settings = read_settings(config)
    url = settings.storage_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def work() -> dict[str, Any]:
        if status:
            return {
                "database": redact_url(url),
                "current": await current_revision(url),
                "head": HEAD_REVISION,
                "pending": await pending_revisions(url),
            }
        applied = await do_migrate(url)
        return {"database": redact_url(url), "applied": applied, "current": HEAD_REVISION}

    result = run(work())

    def human() -> None:
        if status:
            pending = result["pending"]
            console.print(f"database  {result['database']}")
            console.print(f"current   {result['current'] or '(empty)'}")
            console.print(f"head      {result['head']}")
            console.print(f"pending   {', '.join(pending) if pending else 'none — up to date'}")
        elif result["applied"]:
            console.print(
                f"[green]✓[/] applied {len(result['applied'])} migration(s): "
                f"{', '.join(result['applied'])}; schema at {result['current']}"
            )
        else:
            console.print(f"[green]✓[/] schema already at {result['current']}; nothing to do")

    emit(result, as_json, human)
