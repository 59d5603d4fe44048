"""Helpers shared by the settings modules: showing values safely and carrying problems."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

Loc = tuple[str | int, ...]

_QUERY_SECRET = re.compile(r"([?&](?:password|pass|passwd|secret|token)=)[^&#]*", re.IGNORECASE)
_SECRET_NAMES = frozenset(
    {"master_key", "password", "passwd", "secret", "token", "client_secret", "pepper"}
)


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``.

    Covers the password in the user-info part (``scheme://user:password@host``,
    also when the password itself contains ``@``) and ``password=`` / ``token=``
    style query parameters. Strings without a password come back unchanged;
    nothing is raised, whatever the input.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        # The last "@" ends the user info: unencoded "@" in passwords are common in
        # hand-written URLs, and over-redacting a display string is harmless.
        at = rest.rfind("@")
        if at >= 0:
            userinfo, hostpart = rest[:at], rest[at + 1 :]
            user, colon, _password = userinfo.partition(":")
            if colon:
                rest = f"{user}:***@{hostpart}"
        url = f"{scheme}://{rest}"
    return _QUERY_SECRET.sub(r"\1***", url)


def is_secret_key(name: object) -> bool:
    """Whether a configuration key holds a secret whose value must never be shown."""
    if not isinstance(name, str):
        return False
    name = name.lower()
    return name in _SECRET_NAMES or name.endswith(("_secret", "_password", "_token"))


def show(value: object, limit: int = 80) -> str:
    """Render a configuration value for an error line: YAML-like, redacted, bounded."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        text = redact_url(value) if "://" in value or "=" in value else value
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        return repr(text)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def kind(value: object) -> str:
    """A reader's name for the YAML type of ``value`` ("a list", "text" …)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def dotted(loc: Iterable[str | int]) -> str:
    """``("routes", 0, "match")`` -> ``routes[0].match``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class Problems(ValueError):
    """Raised by validators to report one or more problems below the validated value.

    Each item is ``(relative location, message)``; the loader joins the location
    of the failing value with the relative one to name the key.
    """

    def __init__(self, items: list[tuple[Loc, str]]) -> None:
        self.items = items
        super().__init__("; ".join(message for _, message in items))
