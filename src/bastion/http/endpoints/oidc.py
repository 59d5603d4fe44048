"""OpenID Connect endpoints: discovery and userinfo; the two metadata documents.

==============================================  ==========================================
``GET /.well-known/openid-configuration``       OpenID Connect Discovery 1.0 §4
``GET|POST /oauth2/userinfo``                   OpenID Connect Core 1.0 §5.3 (Bearer only)
==============================================  ==========================================

:func:`metadata_documents` builds the RFC 8414 document and the OpenID one from the
same inputs, so the two never disagree (the OpenID document is the RFC 8414 one
plus the OpenID members). :func:`id_token_algorithms` is the one place that says
which algorithms ID tokens may be signed with: the algorithms of the keys bastion
publishes.

Userinfo takes the access token from the ``Authorization: Bearer`` header only
(:mod:`bastion.protocol.rfc6750`); the token must carry ``openid`` and name a user
(``sub``) that exists and is enabled, else 401 ``invalid_token`` (revoked, expired,
disabled or deleted user) or 403 ``insufficient_scope``. Answers are
``Cache-Control: no-store``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.crypto import InvalidTokenError
from bastion.http.body import read_bounded
from bastion.http.runtime import ControlPlane
from bastion.oauth.signing_keys import SigningKeyManager
from bastion.protocol.oidc.backchannel import DISCOVERY_MEMBERS as BACKCHANNEL_DISCOVERY
from bastion.protocol.oidc.core import ID_TOKEN_CLAIMS
from bastion.protocol.oidc.discovery import openid_configuration
from bastion.protocol.oidc.userinfo import (
    REQUIRED_SCOPE,
    SCOPE_CLAIMS,
    UserInfoSource,
    userinfo_claims,
)
from bastion.protocol.rfc6749.authorization import RESPONSE_TYPES, authorization_endpoint_metadata
from bastion.protocol.rfc6749.client_auth import ALL_AUTH_METHODS
from bastion.protocol.rfc6749.errors import OAuthError
from bastion.protocol.rfc6750 import (
    BearerInsufficientScopeError,
    BearerInvalidRequestError,
    BearerInvalidTokenError,
    bearer_token,
)
from bastion.protocol.rfc8414 import authorization_server_metadata
from bastion.storage.errors import NotFoundError
from bastion.storage.models import User

__all__ = [
    "CLAIMS_SUPPORTED",
    "DISCOVERY_PATH",
    "ENDPOINTS",
    "SCOPES_SUPPORTED",
    "USERINFO_PATH",
    "id_token_algorithms",
    "metadata_documents",
    "oidc_routes",
]

DISCOVERY_PATH: Final = "/.well-known/openid-configuration"
USERINFO_PATH: Final = "/oauth2/userinfo"
#: Every endpoint both documents name (issuer-relative paths).
ENDPOINTS: Final = {
    "authorization_endpoint": "/oauth2/authorize",
    "token_endpoint": "/oauth2/token",
    "jwks_uri": "/oauth2/jwks.json",
    "introspection_endpoint": "/oauth2/introspect",
    "revocation_endpoint": "/oauth2/revoke",
    "userinfo_endpoint": USERINFO_PATH,
    "end_session_endpoint": "/oauth2/logout",
}
#: The scopes bastion gives a meaning to (clients register their API scopes besides).
SCOPES_SUPPORTED: Final = ("openid", "profile", "email", "offline_access")
#: The claims bastion can put in an ID token or the userinfo response (``c_hash`` needs a
#: hybrid flow, which bastion does not serve).
CLAIMS_SUPPORTED: Final = (
    "sub",
    *sorted(ID_TOKEN_CLAIMS - {"sub", "c_hash"}),
    *(claim for claims in SCOPE_CLAIMS.values() for claim in claims),
)
#: Algorithms of client assertions (private_key_jwt) the token endpoint verifies.
_CLIENT_ASSERTION_ALGS: Final = ("ES256", "RS256", "PS256", "EdDSA")
_MAX_BODY: Final = 64 * 1024


def id_token_algorithms(signing_keys: SigningKeyManager) -> tuple[str, ...]:
    """The algorithms ID tokens may be signed with: ``signing_keys.id_token_algorithms``
    that have an active key (:meth:`SigningKeyManager.id_token_algorithms`, the one place
    that says so; RS256 always among them)."""
    return signing_keys.id_token_algorithms()


def metadata_documents(runtime: ControlPlane) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(RFC 8414 document, OpenID Discovery document)`` of ``runtime``, from one set of
    inputs: the token endpoint's advertised grants, every client authentication
    method, the endpoints above."""
    issuer = runtime.settings.issuer_url
    grant_types = runtime.token_endpoint.grant_types
    oauth = authorization_server_metadata(
        issuer,
        endpoints=ENDPOINTS,
        grant_types=grant_types,
        auth_methods=ALL_AUTH_METHODS,
        signing_algs=_CLIENT_ASSERTION_ALGS,
        scopes_supported=SCOPES_SUPPORTED,
        response_types=RESPONSE_TYPES,
        extra=authorization_endpoint_metadata(),
    )
    openid = openid_configuration(
        issuer,
        endpoints=ENDPOINTS,
        grant_types=grant_types,
        auth_methods=ALL_AUTH_METHODS,
        client_assertion_algs=_CLIENT_ASSERTION_ALGS,
        id_token_signing_algs=id_token_algorithms(runtime.signing_keys),
        scopes_supported=SCOPES_SUPPORTED,
        claims_supported=CLAIMS_SUPPORTED,
        extra=BACKCHANNEL_DISCOVERY,
    )
    return oauth, openid


def _json(body: Mapping[str, Any], *, cache: str, status: int = 200, **headers: str) -> Response:
    response = Response(orjson.dumps(dict(body)), status, media_type="application/json")
    response.headers["cache-control"] = cache
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def _bearer_error(error: OAuthError) -> Response:
    status, headers, body = error.to_token_response()
    return Response(body, status, headers)


class _OpenId:
    def __init__(self, runtime: ControlPlane) -> None:
        self.runtime = runtime

    async def discovery(self, _: Request) -> Response:
        return _json(metadata_documents(self.runtime)[1], cache="public, max-age=300")

    async def userinfo(self, request: Request) -> Response:
        try:
            claims = await self._userinfo(request)
        except OAuthError as error:
            return _bearer_error(error)
        return _json(claims, cache="no-store", pragma="no-cache")

    async def _userinfo(self, request: Request) -> dict[str, Any]:
        in_body = False
        if request.method == "POST":
            body = await read_bounded(
                request,
                _MAX_BODY,
                lambda: BearerInvalidRequestError("the body is too large", reason="too_large"),
            )
            in_body = "access_token" in parse_qs(body.decode("utf-8", "replace"))
        token = bearer_token(
            request.headers.get("authorization"),
            in_query="access_token" in request.query_params,
            in_body=in_body,
        )
        try:
            verified = await self.runtime.access_tokens.verify(token)
        except InvalidTokenError as exc:
            raise BearerInvalidTokenError(reason=exc.reason) from None
        scope = str(verified.get("scope", "")).split()
        if REQUIRED_SCOPE not in scope:
            raise BearerInsufficientScopeError((REQUIRED_SCOPE,))
        user = await self._user(str(verified.get("sub", "")))
        return userinfo_claims(_source(user), scope)

    async def _user(self, subject: str) -> User:
        try:
            user = await self.runtime.db.users.get(subject)
        except NotFoundError:
            raise BearerInvalidTokenError(
                "the access token's user does not exist", reason="user_unknown"
            ) from None
        if user.disabled:
            raise BearerInvalidTokenError(reason="user_disabled")
        return user


def _source(user: User) -> UserInfoSource:
    return UserInfoSource(
        subject=user.id,
        preferred_username=user.username,
        name=user.display_name or None,
        email=user.email,
        email_verified=user.email_verified,
        updated_at=user.updated_at.timestamp(),
    )


def oidc_routes(runtime: ControlPlane) -> list[Route]:
    """Discovery and userinfo for ``runtime``."""
    views = _OpenId(runtime)
    return [
        Route(DISCOVERY_PATH, views.discovery, methods=["GET"]),
        Route(USERINFO_PATH, views.userinfo, methods=["GET", "POST"]),
    ]
