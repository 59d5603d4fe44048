"""Errors of the ``authorize`` step: the caller is known but may not do this (403).

Every one renders as RFC 9457 problem+json with its stable ``reason``;
:class:`InsufficientScopeError` adds the RFC 6750 §3.1 ``insufficient_scope``
challenge naming the scopes the request needs.
"""

from __future__ import annotations

from collections.abc import Iterable

from bastion.gateway.errors import GatewayError

__all__ = [
    "ClaimMismatchError",
    "ForbiddenError",
    "InsufficientScopeError",
    "MissingRoleError",
    "RouteNotAllowedError",
]


class ForbiddenError(GatewayError):
    """The authenticated caller may not make this request (fail closed).

    Raised as such for a method the route's ``scopes`` mapping does not cover.
    """

    code = "forbidden"
    status = 403
    title = "Forbidden"


class InsufficientScopeError(ForbiddenError):
    """The credential lacks a scope the route requires for this method (RFC 6750 §3.1).

    ``required`` holds every scope the request needs (sorted); the problem
    document repeats them space-separated as ``scope``, like the challenge.
    """

    code = "insufficient_scope"
    status = 403
    title = "Insufficient scope"

    def __init__(self, required: Iterable[str]) -> None:
        self.required: tuple[str, ...] = tuple(sorted(set(required)))
        scope = " ".join(self.required)
        super().__init__(f"This request needs the scopes: {scope}.", scope=scope)
        self.www_authenticate = (
            f'Bearer realm="bastion", error="insufficient_scope", scope="{scope}"'
        )


class RouteNotAllowedError(ForbiddenError):
    """The credential is restricted to other routes (an API key's ``routes`` list)."""

    code = "route_not_allowed"
    status = 403
    title = "Route not allowed"

    def __init__(self) -> None:
        super().__init__("This credential may not call this route.")


class MissingRoleError(ForbiddenError):
    """The caller lacks a role the route requires (``role`` names it)."""

    code = "missing_role"
    status = 403
    title = "Missing role"

    def __init__(self, role: str) -> None:
        super().__init__(f"This route requires the role {role}.", role=role)


class ClaimMismatchError(ForbiddenError):
    """A claim the route requires is absent or has another value (``claim`` names it)."""

    code = "claim_mismatch"
    status = 403
    title = "Claim mismatch"

    def __init__(self, claim: str) -> None:
        super().__init__(f"The credential's claim {claim} does not allow this route.", claim=claim)
