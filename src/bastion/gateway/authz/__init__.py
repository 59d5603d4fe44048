"""The gateway's ``authorize`` step: per-route restrictions and required scopes (403s)."""

from bastion.gateway.authz.claims import RequiredClaims, compile_claims
from bastion.gateway.authz.errors import (
    ClaimMismatchError,
    ForbiddenError,
    InsufficientScopeError,
    MissingRoleError,
    RouteNotAllowedError,
)
from bastion.gateway.authz.scopes import RequiredScopes, check_access, compile_scopes

__all__ = [
    "ClaimMismatchError",
    "ForbiddenError",
    "InsufficientScopeError",
    "MissingRoleError",
    "RequiredClaims",
    "RequiredScopes",
    "RouteNotAllowedError",
    "check_access",
    "compile_claims",
    "compile_scopes",
]
