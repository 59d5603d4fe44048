"""``bastion limits …``: an API key's rate limits, current usage and runtime overrides.

``show`` prints the key's effective limits (its override, else its stored
``rate_limits``) and, with Redis as the shared state, how much of each is
left right now (read without consuming). With the in-process shared state the
counters live inside the serving process: ask its admin API
(``GET /admin/api/v1/keys/{id}/limits``). ``set`` and ``clear`` store an
override in the database, with a change-feed row in the same transaction, so
every running node applies it within a second, without a restart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from bastion.cli.output import CommandArgumentsError, ConfigOption, JsonOption, console, emit
from bastion.cli.running import handles_errors, read_settings

limits_app = typer.Typer(
    help="Per-API-key rate limits: current usage, runtime overrides.",
    no_args_is_help=True,
)

T = TypeVar("T")

KeyIdArgument = typer.Argument(
    ...,
    metavar="KEY",
    help="The key's id or its display prefix (bst_…, as `bastion keys list` shows it).",
)
RateOption = typer.Option(
    ..., "--rate", help="A limit such as 10/minute (repeatable).", show_default=False
)
BurstOption = typer.Option(
    None, "--burst", help="Bucket size (with one --rate; default: the rate).", min=1
)


def _with_limits(work: Callable[[Any, Any, Any], Awaitable[T]], config: Path | None) -> T:
    """Run ``work(api_keys, overrides, limiter)`` on the configured stores."""
    from bastion.apikeys import ApiKeyService
    from bastion.cli.context import with_stores
    from bastion.ratelimit import RedisLimiter
    from bastion.ratelimit.keys import KeyLimitOverrides
    from bastion.storage.shared import is_redis

    settings = read_settings(config)

    async def run(stores: Any) -> T:
        overrides = KeyLimitOverrides(stores.db, stores.shared)
        await overrides.load()
        shared = stores.shared
        limiter = RedisLimiter(shared) if is_redis(shared) else None
        return await work(ApiKeyService(stores.db, settings, shared), overrides, limiter)

    return with_stores(settings, run)


def _print(doc: dict[str, Any]) -> None:
    console.print(f"[bold]{doc['key_id']}[/bold]  limits from: {doc['source']}")
    usage = doc["usage"]
    if not doc["limits"]:
        console.print("  no per-key limits (route limits still apply)")
    for index, limit in enumerate(doc["limits"]):
        line = f"  {limit['rate']} (burst {limit['burst']})"
        if usage is not None:
            state = usage[index]
            line += f": {state['remaining']} remaining, full again in {state['reset']:g}s"
        console.print(line)
    if usage is None and doc["limits"]:
        console.print(
            "  usage: kept inside the server (in-process shared state) — "
            "GET /admin/api/v1/keys/{id}/limits on the server shows it"
        )


@limits_app.command("show")
@handles_errors
def show(
    key_id: str = KeyIdArgument, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Show a key's effective limits and how much of each is left now."""
    from bastion.ratelimit.keys import describe

    async def work(api_keys: Any, overrides: Any, limiter: Any) -> dict[str, Any]:
        key = await api_keys.resolve(key_id)
        return await describe(key.id, key.rate_limits, overrides, limiter)

    doc = _with_limits(work, config)
    emit(doc, as_json, lambda: _print(doc))


@limits_app.command("set")
@handles_errors
def set_limits(
    key_id: str = KeyIdArgument,
    rate: list[str] = RateOption,
    burst: int | None = BurstOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Override a key's limits at runtime (every running node applies it within a second)."""
    from bastion.ratelimit import Limit
    from bastion.ratelimit.keys import describe, parse_override

    if burst is not None and len(rate) != 1:
        raise CommandArgumentsError("--burst needs exactly one --rate")
    for text in rate:
        try:
            Limit.parse(text)
        except ValueError as error:
            raise CommandArgumentsError(f"--rate: {error}") from None
    limits = parse_override([{"rate": text, "burst": burst} for text in rate])

    async def work(api_keys: Any, overrides: Any, limiter: Any) -> dict[str, Any]:
        key = await api_keys.resolve(key_id)
        await overrides.set(key.id, limits)
        return await describe(key.id, key.rate_limits, overrides, limiter)

    doc = _with_limits(work, config)
    emit(doc, as_json, lambda: _print(doc))


@limits_app.command("clear")
@handles_errors
def clear(
    key_id: str = KeyIdArgument, config: Path | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Remove a key's override: its own stored limits apply again."""
    from bastion.ratelimit.keys import describe

    async def work(api_keys: Any, overrides: Any, limiter: Any) -> dict[str, Any]:
        key = await api_keys.resolve(key_id)
        await overrides.clear(key.id)
        return await describe(key.id, key.rate_limits, overrides, limiter)

    doc = _with_limits(work, config)
    emit(doc, as_json, lambda: _print(doc))
