"""OAuth 2.0 Token Exchange — RFC 8693 (https://www.rfc-editor.org/rfc/rfc8693): its rules.

What any token exchange request must satisfy, whatever its subject token (§2.1): the
``subject_token`` and its type are required (the caller says which types it supports); an
``actor_token`` (delegation) or a ``requested_token_type`` other than
:data:`ACCESS_TOKEN_TYPE` is ``invalid_request``; ``resource`` (absolute URIs, RFC 8707)
and ``audience`` (logical names) name the targets, both repeatable, at most
:data:`MAX_TARGETS`; the response (§2.2.1) carries ``access_token``,
``issued_token_type``, ``token_type: Bearer``, ``expires_in`` and ``scope`` (when not
empty).

bastion exchanges one kind of subject token, its own API keys: that grant is a feature
of the key registry, :mod:`bastion.apikeys.token_exchange`, built on these rules (the
protocol layer imports nothing of the features above it).
"""

from __future__ import annotations

from typing import Any, Final

from bastion.protocol.rfc6749.client_auth import sends_client_credentials
from bastion.protocol.rfc6749.errors import InvalidRequestError, InvalidTargetError, OAuthError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc8707 import check_resource

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "GRANT_TYPE",
    "MAX_TARGETS",
    "ExchangeRateLimitedError",
    "echo",
    "requested_targets",
    "sends_client_credentials",
    "subject_token",
    "token_response",
]

#: RFC 8693 §2.1: the grant type of a token exchange request.
GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
#: RFC 8693 §3: the token type of an OAuth 2.0 access token (what bastion issues).
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
#: Most ``resource`` plus ``audience`` values in one request.
MAX_TARGETS: Final = 10

_MAX_AUDIENCE_LENGTH: Final = 2048
_MAX_ECHO: Final = 100


class ExchangeRateLimitedError(OAuthError):
    """The key exchanged too often (429 ``rate_limited`` with ``Retry-After``).

    An extension error code (RFC 6749 §8.5), like the client-authentication
    throttle's ``too_many_attempts``; generic clients treat a 429 as "later".
    """

    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            f"too many token exchanges for this API key; retry in {self.retry_after} seconds",
            reason="exchange_rate_limited",
        )

    def headers(self) -> dict[str, str]:
        """The error headers plus ``Retry-After`` (whole seconds)."""
        return {**super().headers(), "Retry-After": str(self.retry_after)}


def echo(value: str) -> str:
    """``value`` cut to what an error description may repeat of the caller's input."""
    return value[:_MAX_ECHO]


def subject_token(request: OAuthRequest, supported_type: str) -> str:
    """The request's ``subject_token``, once its parameters pass §2.1's rules.

    Raises:
        InvalidRequestError: a missing ``subject_token`` or ``subject_token_type``, a type
            other than ``supported_type``, an ``actor_token`` (delegation is not
            supported), or a ``requested_token_type`` other than :data:`ACCESS_TOKEN_TYPE`.
    """
    form = request.form
    token_type = form.get("subject_token_type")
    if token_type is None:
        raise InvalidRequestError("missing parameter 'subject_token_type'")
    if token_type != supported_type:
        raise InvalidRequestError(
            f"subject_token_type '{echo(token_type)}' is not supported; use {supported_type}"
        )
    token = form.get("subject_token")
    if token is None:
        raise InvalidRequestError("missing parameter 'subject_token'")
    if "actor_token" in form or "actor_token_type" in form:
        raise InvalidRequestError("delegation (actor_token) is not supported")
    requested_type = form.get("requested_token_type")
    if requested_type is not None and requested_type != ACCESS_TOKEN_TYPE:
        raise InvalidRequestError(
            f"requested_token_type '{echo(requested_type)}' is not supported; "
            f"bastion issues {ACCESS_TOKEN_TYPE}"
        )
    return token


def requested_targets(request: OAuthRequest) -> tuple[str, ...]:
    """The distinct ``resource`` and ``audience`` values, in order (§2.1).

    Raises:
        InvalidTargetError: more than :data:`MAX_TARGETS`, a malformed resource (RFC
            8707), or an audience that is not a printable name of at most 2048 characters.
    """
    resources = request.values("resource")
    audiences = request.values("audience")
    if len(resources) + len(audiences) > MAX_TARGETS:
        raise InvalidTargetError(f"at most {MAX_TARGETS} resource and audience values")
    targets: dict[str, None] = {}
    for resource in resources:
        targets[check_resource(resource)] = None
    for audience in audiences:
        if len(audience) > _MAX_AUDIENCE_LENGTH or not audience.isprintable():
            raise InvalidTargetError("audience must be a printable name of at most 2048 characters")
        targets[audience] = None
    return tuple(targets)


def token_response(access_token: str, expires_in: int, scope: str) -> dict[str, Any]:
    """The response members of §2.2.1 for an issued access token."""
    response: dict[str, Any] = {
        "access_token": access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }
    if scope:
        response["scope"] = scope
    return response
