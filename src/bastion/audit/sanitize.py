"""Encoding of user-controlled strings in audit events (no log injection).

A user agent, a subject, a path or anything else a client chose reaches the
audit log, terminals (``bastion audit tail``) and log shippers. Before it is
stored every such string is *encoded*: backslash, C0/C1 control characters
(newlines, ESC of ANSI sequences, NUL — which PostgreSQL text refuses), DEL,
and the Unicode characters that reorder or break lines (bidi overrides and
isolates, U+2028/U+2029) become visible escapes (``\\x1b``, ``\\u202e``), and
the result is capped in length (a capped value ends with ``…``). The encoding
is unambiguous because the backslash itself is escaped.

Encoding happens when the event is recorded (:meth:`bastion.audit.events.Auditor.emit`)
and again when an event is displayed, so a value written into the database
by other means still cannot drive a terminal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FIELD_LIMITS", "encode_data", "encode_text", "for_display"]

# Caps per event member: the column sizes of audit_events (user_agent: 512 by policy).
FIELD_LIMITS: Final[Mapping[str, int]] = {
    "type": 128,
    "outcome": 32,
    "reason": 255,
    "request_id": 128,
    "ip": 64,
    "user_agent": 512,
    "subject": 255,
    "client_id": 255,
    "key_id": 255,
    "route": 255,
}
DATA_STRING_LIMIT: Final = 1024
DATA_MAX_DEPTH: Final = 4
DATA_MAX_ITEMS: Final = 64

_CONTROLS = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(rf"[\\{_CONTROLS}]")
_DISPLAY_UNSAFE = re.compile(rf"[{_CONTROLS}]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def encode_text(value: str, limit: int) -> str:
    """``value`` with unsafe characters escaped, capped at ``limit`` characters."""
    if _UNSAFE.search(value) is not None:
        value = _UNSAFE.sub(_escape, value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def for_display(value: str, limit: int) -> str:
    """A stored (already encoded) ``value`` made safe for a terminal, capped at ``limit``.

    Control characters are escaped as when recording; backslashes are left
    alone (they are the stored encoding's own escapes), so an intact value
    shows exactly as stored and a raw control character slipped into the
    database by other means still cannot drive the terminal.
    """
    if _DISPLAY_UNSAFE.search(value) is not None:
        value = _DISPLAY_UNSAFE.sub(_escape, value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


def encode_data(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value`` with every string (keys too) encoded and capped.

    Nesting deeper than :data:`DATA_MAX_DEPTH` and containers longer than
    :data:`DATA_MAX_ITEMS` are cut; values that are not JSON types become
    their (encoded) ``str``.
    """
    if isinstance(value, str):
        return encode_text(value, DATA_STRING_LIMIT)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # Beyond 2**53 JSON readers lose precision (and the canonical encoder refuses 2**64).
        return value if abs(value) < 2**53 else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if depth >= DATA_MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        items = list(value.items())[:DATA_MAX_ITEMS]
        return {encode_text(str(k), 128): encode_data(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [encode_data(v, depth + 1) for v in list(value)[:DATA_MAX_ITEMS]]
    return encode_text(str(value), DATA_STRING_LIMIT)
