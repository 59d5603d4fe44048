"""The gateway data plane: route matching, the step pipeline, the upstream proxy.

The order of the pipeline is the table :data:`bastion.gateway.pipeline.STEPS`.
"""

from bastion.gateway.authn import ApiKeyAuthenticator
from bastion.gateway.authn.jwt import InvalidBearerTokenError, JwtAuthenticator
from bastion.gateway.authz import ForbiddenError, InsufficientScopeError, RouteNotAllowedError
from bastion.gateway.errors import (
    BadRequestError,
    BadRequestPathError,
    GatewayConfigError,
    GatewayError,
    MethodNotAllowedError,
    RequestTooLargeError,
    RouteNotFoundError,
    UnauthenticatedError,
    UpstreamAbortedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from bastion.gateway.limit import RateLimitedError, RateLimiterUnavailableError
from bastion.gateway.matcher import RouteLike, RouteMatcher
from bastion.gateway.mutate import IdentityHeaders
from bastion.gateway.paths import normalize_path
from bastion.gateway.pipeline import (
    ANONYMOUS,
    STEPS,
    Authenticator,
    Exchange,
    Gateway,
    Identity,
    Step,
)
from bastion.gateway.proxy import UpstreamClient

__all__ = [
    "ANONYMOUS",
    "STEPS",
    "ApiKeyAuthenticator",
    "Authenticator",
    "BadRequestError",
    "BadRequestPathError",
    "Exchange",
    "ForbiddenError",
    "Gateway",
    "GatewayConfigError",
    "GatewayError",
    "Identity",
    "IdentityHeaders",
    "InsufficientScopeError",
    "InvalidBearerTokenError",
    "JwtAuthenticator",
    "MethodNotAllowedError",
    "RateLimitedError",
    "RateLimiterUnavailableError",
    "RequestTooLargeError",
    "RouteLike",
    "RouteMatcher",
    "RouteNotAllowedError",
    "RouteNotFoundError",
    "Step",
    "UnauthenticatedError",
    "UpstreamAbortedError",
    "UpstreamClient",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "normalize_path",
]
