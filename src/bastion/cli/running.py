"""What every command shares: its settings, its event loop, its one-line errors.

The command modules import these downwards; :mod:`bastion.cli.app` only hangs
the commands on the tree, so nothing here imports a command.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bastion.cli.output import fail
from bastion.errors import BastionError

__all__ = ["handles_errors", "read_settings", "run"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(func: F) -> F:
    """Turn a ``BastionError`` escaping ``func`` into the one-line report and exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BastionError as error:
            fail(error, bool(kwargs.get("as_json")))

    return wrapper  # type: ignore[return-value]


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when available (the server's loop), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def read_settings(
    config: Path | None,
    overrides: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Any:
    """Load the settings, ``overrides`` (``BASTION_*`` values a flag set) on top.

    ``flags`` maps such a variable to its flag: a problem with the value is then
    reported as ``--port: …`` instead of naming the variable the user never set.
    """
    # Imported when a command runs: `bastion --help` stays fast.
    from bastion.settings import SettingsError, load_settings

    environ = dict(os.environ)
    if overrides:
        environ.update(overrides)
    try:
        return load_settings(config, environ)
    except SettingsError as error:
        if not flags:
            raise
        lines = []
        for line in error.errors:
            for variable, flag in flags.items():
                if line.startswith(f"{variable}: "):
                    line = f"{flag}: {line[len(variable) + 2 :]}"
            lines.append(line)
        raise SettingsError(lines) from None
