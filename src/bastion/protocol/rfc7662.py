"""OAuth 2.0 Token Introspection — RFC 7662 (https://www.rfc-editor.org/rfc/rfc7662).

The caller is an authenticated confidential client (§2.1: the endpoint "MUST
require some form of authorization"; the HTTP layer authenticates it with
:func:`~bastion.protocol.rfc6749.client_auth.authenticate_client` without
``none``) that is allowed to introspect: its registered scopes include the
reserved scope :data:`INTROSPECT_SCOPE` (``bastion:introspect``). Any other
client is ``unauthorized_client`` — §4: the server must keep token scanning
and one resource server reading another's tokens out, so being a client is
not enough. The ``token`` parameter is required; ``token_type_hint`` is
accepted and ignored (§2.1 allows it: bastion detects its access tokens itself).

A token that is unknown, malformed, expired, revoked, or whose client is
disabled gets exactly ``{"active": false}`` (§2.2: "the authorization server
... SHOULD NOT include any additional information about an inactive token").
An active token gets ``active``, ``scope``, ``client_id``, ``token_type``,
``exp``, ``iat``, ``nbf`` (when set), ``sub``, ``aud``, ``iss`` and ``jti`` (§2.2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias

from bastion.errors import BastionError, ServiceUnavailableError
from bastion.protocol.rfc6749.errors import InvalidRequestError, UnauthorizedClientError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client

__all__ = [
    "INACTIVE",
    "INTROSPECTED_CLAIMS",
    "INTROSPECT_SCOPE",
    "VerifyToken",
    "introspect",
    "required_token",
    "token_claims",
    "verified_claims",
]

#: ``token -> claims``; raises a BastionError (e.g. InvalidTokenError) for any unusable token.
VerifyToken: TypeAlias = Callable[[str], Awaitable[Mapping[str, Any]]]

#: The client scope that allows a client to call the introspection endpoint.
INTROSPECT_SCOPE: Final = "bastion:introspect"

#: The whole response for a token that is not active.
INACTIVE: Final[Mapping[str, Any]] = {"active": False}

#: Claims copied from an active token into the response (RFC 7662 §2.2), when present.
INTROSPECTED_CLAIMS: Final = ("scope", "client_id", "exp", "iat", "nbf", "sub", "aud", "iss", "jti")


async def token_claims(
    request: OAuthRequest, verify_token: VerifyToken
) -> Mapping[str, Any] | None:
    """The claims of the required ``token`` parameter, or None when it is not a valid token.

    Introspection (§2.2) and revocation (RFC 7009 §2.2) both answer an unusable
    token without an error, so only an outage propagates.

    Raises:
        InvalidRequestError: the ``token`` parameter is missing.
        ServiceUnavailableError: from ``verify_token``.
    """
    return await verified_claims(required_token(request), verify_token)


def required_token(request: OAuthRequest) -> str:
    """The ``token`` parameter introspection (§2.1) and revocation (RFC 7009 §2.1) require.

    Raises:
        InvalidRequestError: it is missing.
    """
    token = request.form.get("token")
    if token is None:
        raise InvalidRequestError("missing parameter 'token'")
    return token


async def verified_claims(token: str, verify_token: VerifyToken) -> Mapping[str, Any] | None:
    """``token``'s claims, or None when it is not a valid token (only an outage raises).

    Raises:
        ServiceUnavailableError: from ``verify_token``.
    """
    try:
        return await verify_token(token)
    except ServiceUnavailableError:
        raise
    except BastionError:
        return None


async def introspect(
    request: OAuthRequest, *, caller: Client, verify_token: VerifyToken
) -> dict[str, Any]:
    """The introspection response for the ``token`` in ``request`` (RFC 7662 §2.2).

    ``verify_token`` checks signature, expiry, revocation and the token's
    client; any :class:`~bastion.errors.BastionError` it raises means "not
    active", except :class:`~bastion.errors.ServiceUnavailableError`, which
    propagates (bastion cannot tell, and must not guess, whether the token was
    revoked).

    Raises:
        InvalidRequestError: the ``token`` parameter is missing.
        UnauthorizedClientError: the caller is a public client, or one without
            :data:`INTROSPECT_SCOPE` (``reason`` ``introspection_not_allowed``).
        ServiceUnavailableError: from ``verify_token``.
    """
    if caller.client_type != "confidential":
        raise UnauthorizedClientError("public clients cannot use the introspection endpoint")
    if INTROSPECT_SCOPE not in caller.scopes:
        raise UnauthorizedClientError(
            "the client is not allowed to introspect tokens "
            f"(it needs the scope {INTROSPECT_SCOPE})",
            reason="introspection_not_allowed",
        )
    claims = await token_claims(request, verify_token)
    if claims is None:
        return dict(INACTIVE)
    response: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    for name in INTROSPECTED_CLAIMS:
        if name in claims:
            response[name] = claims[name]
    return response
