"""Access token scope — RFC 6749 §3.3 (https://www.rfc-editor.org/rfc/rfc6749#section-3.3).

``scope = scope-token *( SP scope-token )`` with
``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``: case-sensitive tokens
separated by single spaces, order meaningless. bastion tolerates extra spaces
between tokens and drops duplicates, but refuses characters outside the grammar.

This module is the grammar's one home: the settings (route scopes), the client
registry and the API-key registry ask :func:`is_scope_token` rather than spell
the character class again (``tests/protocol/test_scope.py`` pins it).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final

from bastion.protocol.rfc6749.errors import InvalidScopeError

__all__ = [
    "MAX_SCOPE_TOKENS",
    "check_scope_allowed",
    "format_scope",
    "is_scope_token",
    "parse_scope",
]

#: ``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``: printable ASCII without space,
#: ``"`` or ``\``.
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

#: Most scope tokens accepted in one request.
MAX_SCOPE_TOKENS: Final = 100


def is_scope_token(value: str) -> bool:
    """Whether ``value`` is one scope-token of RFC 6749 §3.3 (no length bound: callers
    that store tokens bound their length themselves)."""
    return _SCOPE_TOKEN.fullmatch(value) is not None


def parse_scope(value: str) -> tuple[str, ...]:
    """The distinct scope tokens of a ``scope`` parameter, in first-seen order.

    Raises:
        InvalidScopeError: a token with a character outside RFC 6749 §3.3, or
            more than 100 tokens.
    """
    tokens: dict[str, None] = {}
    for token in value.split(" "):
        if not token:
            continue
        if not is_scope_token(token):
            raise InvalidScopeError(
                "scope contains a character RFC 6749 section 3.3 does not allow"
            )
        tokens[token] = None
    if len(tokens) > MAX_SCOPE_TOKENS:
        raise InvalidScopeError(f"scope has more than {MAX_SCOPE_TOKENS} values")
    return tuple(tokens)


def check_scope_allowed(requested: Iterable[str], allowed: Collection[str]) -> None:
    """Return when every requested scope is in ``allowed``.

    Raises:
        InvalidScopeError: naming the first scope the client may not request.
    """
    for token in requested:
        if token not in allowed:
            raise InvalidScopeError(f"scope '{token}' is not allowed for this client")


def format_scope(tokens: Iterable[str]) -> str:
    """The ``scope`` string of ``tokens`` (space-separated, as given)."""
    return " ".join(tokens)
