"""The gateway's ``authorize`` step: per-route restrictions and required scopes (403s)."""

from bastion.gateway.authz.errors import (
    ForbiddenError,
    InsufficientScopeError,
    RouteNotAllowedError,
)
from bastion.gateway.authz.scopes import RequiredScopes, check_access, compile_scopes

__all__ = [
    "ForbiddenError",
    "InsufficientScopeError",
    "RequiredScopes",
    "RouteNotAllowedError",
    "check_access",
    "compile_scopes",
]
