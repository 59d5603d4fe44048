"""The error of the settings package: a configuration bastion refuses to start with."""

from __future__ import annotations

from collections.abc import Sequence

from bastion.errors import BastionError


class SettingsError(BastionError):
    """The configuration (file, ``BASTION_*`` variables or ``env:`` references) is invalid.

    ``errors`` holds one line per problem, each naming the key (dotted path such as
    ``listen.port``, or the environment variable that set it), the bad value with
    secrets redacted, and the fix. ``detail`` is the first line, followed by
    ``(and N more)`` when there are several.
    """

    code = "invalid_config"
    status = 500
    title = "Invalid configuration"

    def __init__(self, errors: str | Sequence[str]) -> None:
        lines = [errors] if isinstance(errors, str) else list(errors)
        if not lines:
            lines = [self.title]
        self.errors: list[str] = lines
        detail = lines[0] if len(lines) == 1 else f"{lines[0]} (and {len(lines) - 1} more)"
        super().__init__(detail)
