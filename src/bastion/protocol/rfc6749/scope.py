"""Access token scope — RFC 6749 §3.3 (https://www.rfc-editor.org/rfc/rfc6749#section-3.3).

``scope = scope-token *( SP scope-token )`` with
``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``: case-sensitive tokens
separated by single spaces, order meaningless. bastion tolerates extra spaces
between tokens and drops duplicates, but refuses characters outside the grammar.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Final

from bastion.protocol.rfc6749.errors import InvalidScopeError

__all__ = ["MAX_SCOPE_TOKENS", "check_scope_allowed", "format_scope", "parse_scope"]

_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")

#: Most scope tokens accepted in one request.
MAX_SCOPE_TOKENS: Final = 100


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
        if _SCOPE_TOKEN.fullmatch(token) is None:
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
