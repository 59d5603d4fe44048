"""The client credentials grant — RFC 6749 §4.4 (https://www.rfc-editor.org/rfc/rfc6749#section-4.4).

A confidential client obtains an access token for itself. Rules applied:

- only confidential clients (§4.4: "MUST only be used by confidential clients")
  whose registration allows ``client_credentials`` (else ``unauthorized_client``);
- ``scope`` (§3.3) must be a subset of the client's scopes (else
  ``invalid_scope``); absent, the token gets all of them;
- ``resource`` (RFC 8707) at most once and one of the client's audiences (else
  ``invalid_target``); the token's ``aud`` is the resource, else the client's
  first audience, else the issuer;
- lifetime: the client's ``access_token_ttl`` or the configured default,
  capped at the configured maximum;
- the response is §5.1's: ``access_token``, ``token_type: Bearer``,
  ``expires_in`` and ``scope`` (when not empty). No refresh token (§4.4.3).

:class:`ClientCredentialsGrant` is its entry in the token endpoint's table:
client authentication required.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from bastion.crypto.digests import random_token
from bastion.protocol.rfc6749.errors import UnauthorizedClientError
from bastion.protocol.rfc6749.grants import (
    ClientAuthentication,
    IssueToken,
    TokenRequest,
    bearer_response,
)
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc6749.scope import check_scope_allowed, format_scope, parse_scope
from bastion.protocol.rfc8707 import requested_resource
from bastion.protocol.rfc9068 import access_token_claims
from bastion.storage.models import Client

__all__ = ["GRANT_TYPE", "ClientCredentialsGrant", "TokenLifetimes", "handle", "token_ttl"]

GRANT_TYPE: Final = "client_credentials"


class TokenLifetimes(Protocol):
    """The token lifetime settings a grant reads (``settings.tokens``)."""

    @property
    def access_token_ttl(self) -> float:
        """Default access token lifetime in seconds."""
        ...

    @property
    def max_access_token_ttl(self) -> float:
        """Upper bound on any access token lifetime in seconds."""
        ...


def token_ttl(client: Client, settings_tokens: TokenLifetimes) -> int:
    """Whole seconds an access token for ``client`` lives: its own TTL or the default, capped."""
    wanted = client.access_token_ttl or settings_tokens.access_token_ttl
    return max(1, int(min(wanted, settings_tokens.max_access_token_ttl)))


async def handle(
    request: OAuthRequest,
    client: Client,
    *,
    issuer: str,
    settings_tokens: TokenLifetimes,
    issue_token: IssueToken,
    now: float | None = None,
) -> dict[str, Any]:
    """Issue an access token to ``client`` (already authenticated) for ``request``.

    Returns the token response members (RFC 6749 §5.1).

    Raises:
        UnauthorizedClientError: a public client, or one not registered for
            this grant.
        InvalidScopeError: a malformed scope or one the client is not allowed.
        InvalidTargetError: a malformed resource, several, or one not allowed.
    """
    if client.client_type != "confidential":
        raise UnauthorizedClientError("public clients cannot use the client_credentials grant")
    if GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClientError(
            "the client is not allowed to use the client_credentials grant"
        )
    requested = request.form.get("scope")
    if requested is None:
        scopes: tuple[str, ...] = client.scopes
    else:
        scopes = parse_scope(requested)
        check_scope_allowed(scopes, client.scopes)
    resource = requested_resource(request.values("resource"), client.audiences)
    audience = resource or (client.audiences[0] if client.audiences else issuer)
    ttl = token_ttl(client, settings_tokens)
    scope = format_scope(scopes)
    claims = access_token_claims(
        issuer=issuer,
        subject=client.client_id,
        audience=audience,
        client_id=client.client_id,
        scope=scope,
        ttl=ttl,
        now=time.time() if now is None else now,
        jti=random_token(16),
    )
    return bearer_response(await issue_token(claims), ttl, scope)


@dataclass(frozen=True, slots=True)
class ClientCredentialsGrant:
    """The token endpoint's ``client_credentials`` entry: :func:`handle` for the
    authenticated client (client authentication required, §4.4.2)."""

    issuer: str
    settings_tokens: TokenLifetimes
    issue_token: IssueToken
    client_authentication: ClassVar[ClientAuthentication] = "required"

    async def issue(self, token_request: TokenRequest) -> dict[str, Any]:
        """Issue the client's token (see :func:`handle` for what it raises)."""
        return await handle(
            token_request.request,
            token_request.authenticated_client(),
            issuer=self.issuer,
            settings_tokens=self.settings_tokens,
            issue_token=self.issue_token,
        )
