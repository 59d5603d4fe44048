"""Options shared by commands, and their values: durations and moments, parsed once, errors
naming the flag.

Durations go through :func:`bastion.settings.fields.parse_duration` (the one
home of duration parsing, bounded to 100 years), so ``--expires 99999999d`` or
``--since 99999999999d`` is a one-line error naming the flag, never a traceback.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import typer

from bastion.cli.output import CommandArgumentsError

__all__ = ["flag_option", "parse_duration_option", "parse_moment"]


def flag_option(flag: str, help_text: str) -> Any:
    """An optional flag without a default shown (``None`` when not given; repeatable for lists)."""
    return typer.Option(None, flag, help=help_text, show_default=False)


def _clip(value: str) -> str:
    return repr(value[:40] + ("…" if len(value) > 40 else ""))


def parse_duration_option(value: str | None, flag: str) -> float | None:
    """``value`` of ``flag`` in seconds (None when not given).

    Raises ``CommandArgumentsError`` naming ``flag``.
    """
    if value is None:
        return None
    from bastion.settings.fields import DurationError, parse_duration

    try:
        return parse_duration(value.strip())
    except DurationError as error:
        raise CommandArgumentsError(f"{flag} {_clip(value)}: {error.reason}") from None


def parse_moment(
    value: str | None, flag: str, now: datetime, *, direction: Literal["ago", "ahead"] = "ago"
) -> datetime | None:
    """``value`` of ``flag``: a duration before (``ago``) or after (``ahead``) ``now``, or an
    ISO 8601 date/time (UTC unless it carries an offset). None when not given.

    Raises ``CommandArgumentsError`` naming ``flag``: neither form, a duration over
    100 years, or a date/time outside what can be stored.
    """
    if value is None:
        return None
    from bastion.settings.fields import DurationError, parse_duration

    text = value.strip()
    try:
        seconds = parse_duration(text)
    except DurationError as error:
        if error.too_long:
            raise CommandArgumentsError(f"{flag} {_clip(value)}: {error.reason}") from None
    else:
        delta = timedelta(seconds=seconds)
        return now - delta if direction == "ago" else now + delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        hint = "ago (15m, 24h, 7d)" if direction == "ago" else "from now (30d, 12h)"
        raise CommandArgumentsError(
            f"{flag} {_clip(value)}: use a duration {hint} or an ISO 8601 time "
            "(2026-01-31T12:00:00Z)"
        ) from None
    try:
        return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise CommandArgumentsError(
            f"{flag} {_clip(value)}: out of range — give a date/time between the years 1 and 9999"
        ) from None
