"""The control plane's side of the gateway: typed settings -> the native route table.

The native core (``native/``) decides and forwards every gateway request; this
package compiles its table (:mod:`bastion.gateway.compile`), keeps what the
control plane holds of it (:mod:`bastion.gateway.control`), answers its cache
misses (:mod:`bastion.gateway.lookups`) and pushes state into it
(:mod:`bastion.gateway.native_push`).
"""

from bastion.gateway.authn.identity import ANONYMOUS, Identity
from bastion.gateway.authn.jwt import InvalidBearerTokenError, JwtAuthenticator
from bastion.gateway.authz import ForbiddenError, InsufficientScopeError, RouteNotAllowedError
from bastion.gateway.control import GatewayControl
from bastion.gateway.errors import (
    BadRequestError,
    BadRequestPathError,
    GatewayConfigError,
    GatewayError,
    MethodNotAllowedError,
    RequestTooLargeError,
    RouteNotFoundError,
    UnauthenticatedError,
)
from bastion.gateway.forwarded import TrustedProxies, client_ip
from bastion.gateway.matcher import RouteMatcher
from bastion.gateway.mutate import IdentityHeaders
from bastion.gateway.paths import normalize_path

__all__ = [
    "ANONYMOUS",
    "BadRequestError",
    "BadRequestPathError",
    "ForbiddenError",
    "GatewayConfigError",
    "GatewayControl",
    "GatewayError",
    "Identity",
    "IdentityHeaders",
    "InsufficientScopeError",
    "InvalidBearerTokenError",
    "JwtAuthenticator",
    "MethodNotAllowedError",
    "RequestTooLargeError",
    "RouteMatcher",
    "RouteNotAllowedError",
    "RouteNotFoundError",
    "TrustedProxies",
    "UnauthenticatedError",
    "client_ip",
    "normalize_path",
]
