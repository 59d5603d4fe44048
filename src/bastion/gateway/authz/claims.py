"""Required claims and roles per route: compiled once, checked by the ``authorize`` step.

A route's ``claims`` maps a claim name to the value the identity must carry:
a scalar matches a claim equal to it (type and value: ``true`` is not ``1``)
or an array claim containing it; a list needs an array claim containing every
listed value. ``roles`` (all required) are read from ``roles_claim``, a claim
name or a dotted path into nested objects (``realm_access.roles`` for
Keycloak); the roles claim may be an array of strings or one space-separated
string. Identities without claims (API keys) satisfy neither: default deny.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bastion.gateway.authz.errors import ClaimMismatchError, MissingRoleError
from bastion.settings import RouteSettings

__all__ = ["RequiredClaims", "compile_claims"]


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def _holds(actual: object, expected: object) -> bool:
    if isinstance(expected, list):
        return isinstance(actual, list) and all(
            any(_same(item, want) for item in actual) for want in expected
        )
    if isinstance(actual, list):
        return any(_same(item, expected) for item in actual)
    return _same(actual, expected)


def _lookup(claims: Mapping[str, Any], path: Sequence[str]) -> object:
    value: object = claims
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class RequiredClaims:
    """The claims and roles one route requires (see the module docstring)."""

    __slots__ = ("claims", "roles", "roles_path")

    def __init__(
        self, claims: Mapping[str, object], roles: Sequence[str], roles_claim: str
    ) -> None:
        self.claims = dict(claims)
        self.roles = tuple(roles)
        self.roles_path = tuple(roles_claim.split("."))

    def check(self, claims: Mapping[str, Any]) -> None:
        """Return if ``claims`` satisfy the route.

        Raises :class:`ClaimMismatchError` naming the first failing claim, or
        :class:`MissingRoleError` naming the first missing role.
        """
        for name, expected in self.claims.items():
            if not _holds(claims.get(name), expected):
                raise ClaimMismatchError(name)
        if self.roles:
            held = _lookup(claims, self.roles_path)
            if isinstance(held, str):
                granted = set(held.split())
            elif isinstance(held, list):
                granted = {role for role in held if isinstance(role, str)}
            else:
                granted = set()
            for role in self.roles:
                if role not in granted:
                    raise MissingRoleError(role)


def compile_claims(route: RouteSettings) -> RequiredClaims | None:
    """The :class:`RequiredClaims` of a route's settings, or None when it requires none."""
    if not route.claims and not route.roles:
        return None
    return RequiredClaims(route.claims, route.roles, route.roles_claim)
