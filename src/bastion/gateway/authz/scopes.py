"""Required scopes per route and method: compiled once, checked by the ``authorize`` step.

A route's ``scopes`` setting is either one list (every method needs it) or a
mapping ``{METHOD: [scopes], "*": [scopes]}`` where ``"*"`` covers the methods
not listed and ``HEAD`` falls back to ``GET``. A method the mapping does not
cover at all is denied (default deny; the settings refuse such a mapping for
the methods a route accepts, so this only catches unusual methods).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bastion.gateway.authz.errors import (
    ForbiddenError,
    InsufficientScopeError,
    RouteNotAllowedError,
)

__all__ = ["RequiredScopes", "check_access", "compile_scopes"]

_NOTHING: frozenset[str] = frozenset()


class RequiredScopes:
    """The scopes one route requires, by request method."""

    __slots__ = ("by_method", "default")

    def __init__(
        self, by_method: Mapping[str, frozenset[str]], default: frozenset[str] | None
    ) -> None:
        self.by_method = dict(by_method)
        self.default = default

    def for_method(self, method: str) -> frozenset[str] | None:
        """The scopes ``method`` needs, or ``None`` when the route says nothing for it."""
        found = self.by_method.get(method)
        if found is None and method == "HEAD":
            found = self.by_method.get("GET")
        return found if found is not None else self.default


def compile_scopes(value: object) -> RequiredScopes:
    """Compile a route's ``scopes`` setting (``None``, a list, or a method mapping).

    Raises ``ValueError`` for any other shape (the settings model validates first,
    so this only guards hand-built routes).
    """
    if value is None:
        return RequiredScopes({}, _NOTHING)
    if isinstance(value, Mapping):
        by_method = {
            str(method).upper(): frozenset(_tokens(tokens))
            for method, tokens in value.items()
            if method != "*"
        }
        star = value.get("*")
        return RequiredScopes(by_method, None if star is None else frozenset(_tokens(star)))
    return RequiredScopes({}, frozenset(_tokens(value)))


def _tokens(value: object) -> Iterable[str]:
    if isinstance(value, str) or not isinstance(value, Sequence | frozenset | set):
        raise ValueError(f"scopes must be a list of scope names, got {value!r}")
    return [str(token) for token in value]


def check_access(
    route_name: str,
    method: str,
    required: RequiredScopes | None,
    granted: frozenset[str],
    allowed_routes: frozenset[str] | None,
) -> None:
    """Return if the caller may make this request; raise otherwise.

    Raises :class:`RouteNotAllowedError` when ``allowed_routes`` (the
    credential's restriction, ``None`` for none) lacks ``route_name``,
    :class:`ForbiddenError` when ``required`` does not cover ``method``, and
    :class:`InsufficientScopeError` when ``granted`` lacks a required scope.
    """
    if allowed_routes is not None and route_name not in allowed_routes:
        raise RouteNotAllowedError
    if required is None:
        return
    needed = required.for_method(method)
    if needed is None:
        raise ForbiddenError(
            f"The route's scopes name no rule for {method}; the request is denied."
        )
    if needed and not needed <= granted:
        raise InsufficientScopeError(needed)
