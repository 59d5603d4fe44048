"""The refresh token grant — RFC 6749 §6 (https://www.rfc-editor.org/rfc/rfc6749#section-6).

A client trades a refresh token for a new access token and, since bastion
rotates every refresh token (RFC 9700 §4.14.2), a new refresh token. Rules
applied here, before the token is looked at:

- the client authenticated (§6: "authenticate the client if client
  authentication is included"; a public client authenticates with ``none``,
  its ``client_id`` binding it) and is allowed the ``refresh_token`` grant
  (else ``unauthorized_client``);
- ``refresh_token`` is required (else ``invalid_request``); a parameter sent
  without a value counts as omitted (§3.2);
- ``scope`` may narrow, never widen, what the token was granted (§6: "MUST
  NOT include any scope not originally granted" — ``invalid_scope``); absent,
  the access token gets the original scope. The new refresh token keeps the
  presented token's scope whatever was asked (§6: "identical");
- ``resource`` (RFC 8707) as for client credentials: at most once, one of the
  client's audiences (else ``invalid_target``).

What the token itself is worth — which client it belongs to, expiry, reuse,
revocation — is state, so it is the :class:`RefreshTokens` store's decision
(``bastion.oauth.refresh_tokens``): it rotates the token or raises
``invalid_grant`` / ``invalid_scope``. The access token issued with a
rotation carries the rotation's ``jti``, which is how the family's access
tokens are found when the family is revoked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from bastion.protocol.rfc6749.errors import InvalidRequestError, UnauthorizedClientError
from bastion.protocol.rfc6749.grants import (
    ClientAuthentication,
    IssueToken,
    TokenRequest,
    bearer_response,
)
from bastion.protocol.rfc6749.grants.client_credentials import TokenLifetimes, token_ttl
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc6749.scope import format_scope, parse_scope
from bastion.protocol.rfc8707 import requested_resource
from bastion.protocol.rfc9068 import access_token_claims
from bastion.storage.models import Client

__all__ = [
    "GRANT_TYPE",
    "RefreshRequest",
    "RefreshTokenGrant",
    "RefreshTokens",
    "Rotation",
    "handle",
    "requested_scope",
]

GRANT_TYPE: Final = "refresh_token"


@dataclass(frozen=True, slots=True)
class Rotation:
    """A refresh token rotated: the new token (shown once) and what its access token carries.

    ``jti`` identifies the access token issued with it; ``subject`` is the user
    (or the client, for a family without one); ``scope`` the access token's
    scope; ``issued_at`` the rotation's time (epoch seconds), the token's ``iat``.
    """

    refresh_token: str
    jti: str
    subject: str
    scope: tuple[str, ...]
    issued_at: float


@dataclass(frozen=True, slots=True)
class RefreshRequest:
    """A refresh as the store sees it: the presented token, the (authenticated) client
    presenting it, the scope asked for (``None``: the token's own) and from where."""

    refresh_token: str
    client: Client
    scope: tuple[str, ...] | None = None
    client_ip: str | None = None


class RefreshTokens(Protocol):
    """Where refresh tokens live (``bastion.oauth.refresh_tokens.RefreshTokenService``)."""

    async def rotate(self, refresh: RefreshRequest) -> Rotation:
        """Retire the presented token and return its successor; raises ``InvalidGrantError``
        (unknown, expired, revoked, reused, another client's) or ``InvalidScopeError``
        (a scope not within the token's)."""
        ...


def requested_scope(request: OAuthRequest) -> tuple[str, ...] | None:
    """The scope a refresh asks for, or ``None`` for the original one (absent or empty)."""
    value = request.form.get("scope")
    return parse_scope(value) if value else None


async def handle(token_request: TokenRequest, grant: RefreshTokenGrant) -> dict[str, Any]:
    """Rotate the refresh token ``token_request`` presents, for its authenticated client,
    with the issuer, lifetimes, signer and store of ``grant``; the token response.

    Raises:
        UnauthorizedClientError: the client is not registered for this grant.
        InvalidRequestError: no ``refresh_token``.
        InvalidScopeError: a malformed scope, or one wider than the token's.
        InvalidTargetError: a malformed resource, several, or one not allowed.
        InvalidClientError: no authenticated client (never, from the token endpoint).
        InvalidGrantError: (from the store) the token is not usable.
    """
    request, client = token_request.request, token_request.authenticated_client()
    if GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClientError("the client is not allowed to use the refresh_token grant")
    presented = request.form.get("refresh_token")
    if not presented:
        raise InvalidRequestError("missing parameter 'refresh_token'")
    refresh = RefreshRequest(presented, client, requested_scope(request), token_request.client_ip)
    resource = requested_resource(request.values("resource"), client.audiences)
    audience = resource or (client.audiences[0] if client.audiences else grant.issuer)
    rotation = await grant.refresh_tokens.rotate(refresh)
    ttl = token_ttl(client, grant.settings_tokens)
    granted = format_scope(rotation.scope)
    claims = access_token_claims(
        issuer=grant.issuer,
        subject=rotation.subject,
        audience=audience,
        client_id=client.client_id,
        scope=granted,
        ttl=ttl,
        now=rotation.issued_at,
        jti=rotation.jti,
    )
    access_token = await grant.issue_token(claims)
    return bearer_response(access_token, ttl, granted, refresh_token=rotation.refresh_token)


@dataclass(frozen=True, slots=True)
class RefreshTokenGrant:
    """The token endpoint's ``refresh_token`` entry: :func:`handle` for the authenticated
    client. Client authentication is required: confidential clients with their
    credentials, public ones with ``none`` (their ``client_id``), §6 and §2.3."""

    refresh_tokens: RefreshTokens
    issuer: str
    settings_tokens: TokenLifetimes
    issue_token: IssueToken
    client_authentication: ClassVar[ClientAuthentication] = "required"

    async def issue(self, token_request: TokenRequest) -> dict[str, Any]:
        """Rotate and issue (see :func:`handle` for what it raises)."""
        return await handle(token_request, self)
