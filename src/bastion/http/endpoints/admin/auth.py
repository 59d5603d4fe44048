"""Admin API authentication: bastion's own access tokens (RFC 9068) as bearer tokens (RFC 6750).

A request carries ``Authorization: Bearer <token>``. The token must verify
through the runtime's access-token verifier with the audience
``{issuer}/admin/api`` and carry the scope ``bastion:admin`` (everything) or
``bastion:admin:read`` (GET only); a token bound to a key or certificate
(``cnf``) is refused, as no binding proof is checked here, and so is a token
exchanged from an API key (``client_id`` ``apikey:…``): keys are no admin
credentials. Failures are 401 with a ``WWW-Authenticate`` challenge, or 403
``insufficient_scope``; the precise reason goes to the log. The audience and scopes
are the authorization server's rule (:mod:`bastion.oauth.admin_tokens`), checked here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from starlette.requests import Request

from bastion.crypto import InvalidTokenError
from bastion.http.endpoints.admin.errors import (
    AdminAuthUnavailableError,
    AdminInvalidTokenError,
    AdminMissingTokenError,
    InsufficientScopeError,
)
from bastion.http.runtime import AdminPlane
from bastion.oauth.admin_tokens import (
    ADMIN_AUDIENCE_PATH,
    ADMIN_READ_SCOPE,
    ADMIN_SCOPE,
    admin_audience,
)

__all__ = [
    "ADMIN_AUDIENCE_PATH",
    "ADMIN_READ_SCOPE",
    "ADMIN_SCOPE",
    "admin_audience",
    "authenticate_admin",
]

log = logging.getLogger("bastion.http.admin")

_READ_METHODS: Final = frozenset({"GET", "HEAD"})


def _bearer_token(request: Request) -> str:
    values = request.headers.getlist("authorization")
    if not values:
        raise AdminMissingTokenError("send an access token: Authorization: Bearer <token>")
    if len(values) > 1:
        raise AdminInvalidTokenError("several_authorization_headers")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AdminMissingTokenError(
            "the admin API accepts only bearer tokens: Authorization: Bearer <token>"
        )
    token = token.strip()
    if not token or " " in token:
        raise AdminInvalidTokenError("malformed")
    return token


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list):
        return [item for item in aud if isinstance(item, str)]
    return []


async def authenticate_admin(request: Request, runtime: AdminPlane) -> Mapping[str, Any]:
    """Authenticate and authorize an admin API request; return the token's claims.

    Raises:
        AdminMissingTokenError: no bearer token (401, challenge without error code).
        AdminInvalidTokenError: the token was refused (401 ``invalid_token``).
        InsufficientScopeError: the token lacks the needed scope (403).
        AdminAuthUnavailableError: the runtime has no access-token verifier (503).
    """
    token = _bearer_token(request)
    verifier = runtime.access_tokens
    if verifier is None:
        raise AdminAuthUnavailableError("no access-token verifier is configured")
    audience = admin_audience(runtime.settings.issuer_url)
    try:
        claims = await verifier.verify(token, audience=audience)
    except InvalidTokenError as error:
        log.info("admin API token refused: %s", error.reason)
        raise AdminInvalidTokenError(error.reason) from None
    # The verifier was asked for this audience; checked again so a verifier that
    # ignores the keyword can never let another service's token in.
    if audience not in _audiences(claims):
        log.info("admin API token refused: wrong_audience")
        raise AdminInvalidTokenError("wrong_audience")
    client_id = claims.get("client_id")
    if isinstance(client_id, str) and client_id.startswith("apikey:"):
        # Exchanged from an API key (RFC 8693): a key is never an admin credential. The
        # exchange refuses the admin audience; this also covers any token minted before.
        log.info("admin API token refused: api_key_token")
        raise AdminInvalidTokenError("api_key_token")
    if "cnf" in claims:
        # A sender-constrained token (DPoP jkt, mTLS x5t#S256) is no bearer token, and
        # the admin API verifies no binding proof: refused, never accepted unbound.
        log.info("admin API token refused: cnf_unsupported")
        raise AdminInvalidTokenError("cnf_unsupported")
    scope = claims.get("scope")
    scopes = set(scope.split()) if isinstance(scope, str) else set()
    if ADMIN_SCOPE in scopes:
        return claims
    if request.method in _READ_METHODS:
        if ADMIN_READ_SCOPE in scopes:
            return claims
        raise InsufficientScopeError(ADMIN_READ_SCOPE)
    raise InsufficientScopeError(ADMIN_SCOPE)
