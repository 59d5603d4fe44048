"""Errors of the admin API: authentication (RFC 6750 challenges) and request bodies."""

from __future__ import annotations

from bastion.errors import BastionError, ServiceUnavailableError
from bastion.http import errors as http_errors

__all__ = [
    "REALM",
    "AdminAPIError",
    "AdminAddressForbiddenError",
    "AdminAuthUnavailableError",
    "AdminInvalidTokenError",
    "AdminMissingTokenError",
    "InsufficientScopeError",
    "InvalidRequestBodyError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
]

REALM = "bastion"


class AdminAPIError(BastionError):
    """Root of the admin API's own errors."""

    code = "admin_api_error"
    status = 500
    title = "Admin API error"


class AdminAddressForbiddenError(AdminAPIError):
    """The client's address is outside ``admin.allow_from`` (checked before any token)."""

    code = "admin_ip_forbidden"
    status = 403
    title = "Forbidden"


class AdminMissingTokenError(AdminAPIError):
    """No bearer token was presented (RFC 6750 §3.1: the challenge carries no error code)."""

    code = "missing_token"
    status = 401
    title = "Authentication required"
    www_authenticate = f'Bearer realm="{REALM}"'


class AdminInvalidTokenError(AdminAPIError):
    """The bearer token was refused; ``reason`` (for the log) says why, the client sees one code."""

    code = "invalid_token"
    status = 401
    title = "Invalid token"
    www_authenticate = f'Bearer realm="{REALM}", error="invalid_token"'

    def __init__(self, reason: str) -> None:
        super().__init__("the access token is invalid, expired or not meant for the admin API")
        self.reason = reason


class InsufficientScopeError(AdminAPIError):
    """The token is valid but lacks the scope this request needs (RFC 6750 §3.1)."""

    code = "insufficient_scope"
    status = 403
    title = "Insufficient scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this request needs the scope {scope!r}", required_scope=scope)
        self.www_authenticate = (
            f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'
        )


class AdminAuthUnavailableError(ServiceUnavailableError, AdminAPIError):
    """The runtime has no access-token verifier, so no request can be authenticated."""

    code = "admin_auth_unavailable"
    status = 503
    title = "Admin API authentication unavailable"


# The body errors are the HTTP face's (the leak-report endpoint answers the same ones).


class InvalidRequestBodyError(http_errors.InvalidRequestError, AdminAPIError):
    """The request body (or a query parameter) is malformed; ``errors`` lists field and message."""


class PayloadTooLargeError(http_errors.PayloadTooLargeError, AdminAPIError):
    """The request body exceeds the admin API's limit."""


class UnsupportedMediaTypeError(http_errors.UnsupportedMediaTypeError, AdminAPIError):
    """The request body is not JSON."""
