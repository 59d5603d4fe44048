"""The authorization code grant — RFC 6749 §4.1.3 (https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3),
with PKCE (RFC 7636 §4.5) and the OpenID Connect ID token (Core §3.1.3.3).

Rules applied here, before the code is looked at:

- the client authenticated (§4.1.3: confidential clients with their
  credentials; a public client with ``none``, its ``client_id`` binding it) and
  is allowed the ``authorization_code`` grant (else ``unauthorized_client``);
- ``code`` and ``redirect_uri`` are required (``invalid_request``): bastion's
  authorization requests always carry a ``redirect_uri`` (RFC 9700 §2.1), so
  the token request must repeat it; a parameter without a value counts as
  omitted (§3.2);
- ``code_verifier`` is required and well-formed (RFC 7636 §4.5, ``invalid_request``).

What the code is worth — unknown, used, expired, another client's, another
``redirect_uri``, the verifier not matching — is state, so it is the
:class:`AuthorizationCodes` store's decision (``bastion.oauth.authorization_codes``):
it consumes the code once or raises ``invalid_grant``.

The response: an access token (RFC 9068) whose ``jti`` is the record id of the
first refresh token of a family named after the code, so that a replayed code
revokes both. The refresh token is returned when the client may use the
``refresh_token`` grant and — for an OpenID Connect request (``openid`` in the
scope) — ``offline_access`` was granted (Core §11). An ID token is added when
the scope holds ``openid``, signed with the algorithm the client registered
(``id_token_signed_response_alg``), its ``at_hash`` hashed to match.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, TypeAlias

from bastion.protocol.oidc.core import id_token_claims
from bastion.protocol.rfc6749.errors import InvalidRequestError, UnauthorizedClientError
from bastion.protocol.rfc6749.grants import ClientAuthentication, IssueToken, TokenRequest
from bastion.protocol.rfc6749.grants import bearer_response as _bearer_response
from bastion.protocol.rfc6749.grants import refresh_token as _refresh
from bastion.protocol.rfc6749.grants.client_credentials import TokenLifetimes, token_ttl
from bastion.protocol.rfc6749.scope import parse_scope
from bastion.protocol.rfc7636 import check_code_verifier
from bastion.protocol.rfc8707 import requested_resource
from bastion.protocol.rfc9068 import access_token_claims
from bastion.storage.models import Client

__all__ = [
    "GRANT_TYPE",
    "AuthorizationCodeGrant",
    "AuthorizationCodes",
    "CodeRedemption",
    "IdTokenLifetime",
    "RedeemedCode",
    "SignIdToken",
    "handle",
    "returns_refresh_token",
]

GRANT_TYPE: Final = "authorization_code"
OPENID: Final = "openid"
OFFLINE_ACCESS: Final = "offline_access"

#: Signs an ID token with the algorithm the client registered (its
#: ``id_token_signed_response_alg``, OIDC Registration §2; ``None``: the server's default):
#: ``build(alg) -> claims`` is called with the algorithm of the key that will sign
#: (``at_hash`` depends on it); returns the compact JWS (``typ: JWT``).
SignIdToken: TypeAlias = Callable[[Callable[[str], dict[str, Any]], str | None], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class CodeRedemption:
    """A token request's code as the store sees it: the code, the authenticated client,
    the ``redirect_uri`` and ``code_verifier`` sent, and from where."""

    code: str
    client: Client
    redirect_uri: str
    code_verifier: str
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class RedeemedCode:
    """What a consumed code was issued for (its user, scope, OIDC authentication facts).

    ``auth_time`` is epoch seconds (``None``: unknown, the issue time stands in);
    ``sid`` the browser session's id for the ID token; ``code_digest`` the code's
    stored form; ``family_id`` the name of the refresh family the code may start
    (derived from the code).
    """

    code_digest: str
    user_id: str
    scope: str
    family_id: str
    issued_at: float
    auth_time: float | None = None
    amr: tuple[str, ...] = ()
    nonce: str | None = None
    acr: str | None = None
    sid: str | None = None

    def authentication(self) -> dict[str, Any]:
        """The ID token's facts of the authentication (Core §2): ``nonce``, ``acr``,
        ``amr``, ``sid`` as :func:`~bastion.protocol.oidc.core.id_token_claims` takes them."""
        return {"nonce": self.nonce, "acr": self.acr, "amr": self.amr, "sid": self.sid}


class AuthorizationCodes(Protocol):
    """Where codes live (``bastion.oauth.authorization_codes.AuthorizationCodeService``)."""

    async def redeem(self, redemption: CodeRedemption) -> RedeemedCode:
        """Consume the code once; raises ``InvalidGrantError`` when it is not usable."""
        ...

    async def start_family(self, client: Client, code: RedeemedCode) -> _refresh.Rotation:
        """Start the refresh family named after ``code``: its first token and the ``jti``
        and ``iat`` of the access token issued with it."""
        ...


class IdTokenLifetime(TokenLifetimes, Protocol):
    """The settings the grant reads (``settings.tokens``)."""

    @property
    def id_token_ttl(self) -> float:
        """Lifetime of an ID token, seconds."""
        ...


def _required(token_request: TokenRequest, name: str) -> str:
    value = token_request.request.form.get(name)
    if not value:
        raise InvalidRequestError(f"missing parameter '{name}'")
    return value


def returns_refresh_token(client: Client, scope: tuple[str, ...]) -> bool:
    """Whether the response carries the refresh token: the client may use the grant and,
    for an OpenID Connect request, ``offline_access`` was granted (Core §11)."""
    if _refresh.GRANT_TYPE not in client.grant_types:
        return False
    return OPENID not in scope or OFFLINE_ACCESS in scope


async def handle(token_request: TokenRequest, grant: AuthorizationCodeGrant) -> dict[str, Any]:
    """Redeem the code ``token_request`` presents, for its authenticated client; the
    token response (access token, refresh token and ID token as the module docstring says).

    Raises:
        UnauthorizedClientError: the client is not registered for this grant.
        InvalidRequestError: no ``code``, ``redirect_uri`` or ``code_verifier``, or a
            malformed verifier.
        InvalidTargetError: a malformed resource, several, or one not allowed.
        InvalidClientError: no authenticated client (never, from the token endpoint).
        InvalidGrantError: (from the store) the code is not usable.
    """
    request, client = token_request.request, token_request.authenticated_client()
    if GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClientError(
            "the client is not allowed to use the authorization_code grant"
        )
    code = _required(token_request, "code")
    redirect_uri = _required(token_request, "redirect_uri")
    verifier = check_code_verifier(request.form.get("code_verifier") or None)
    resource = requested_resource(request.values("resource"), client.audiences)
    redemption = CodeRedemption(code, client, redirect_uri, verifier, token_request.client_ip)
    redeemed = await grant.codes.redeem(redemption)
    family = await grant.codes.start_family(client, redeemed)
    ttl = token_ttl(client, grant.settings_tokens)
    claims = access_token_claims(
        issuer=grant.issuer,
        subject=redeemed.user_id,
        audience=resource or (client.audiences[0] if client.audiences else grant.issuer),
        client_id=client.client_id,
        scope=redeemed.scope,
        ttl=ttl,
        now=family.issued_at,
        jti=family.jti,
    )
    access_token = await grant.issue_token(claims)
    scope = parse_scope(redeemed.scope)
    extra: dict[str, str] = {}
    if returns_refresh_token(client, scope):
        extra["refresh_token"] = family.refresh_token
    if OPENID in scope:
        extra["id_token"] = await _id_token(grant, client, redeemed, access_token, family)
    return _bearer_response(access_token, ttl, redeemed.scope, **extra)


async def _id_token(
    grant: AuthorizationCodeGrant,
    client: Client,
    code: RedeemedCode,
    access_token: str,
    family: _refresh.Rotation,
) -> str:
    def build(alg: str) -> dict[str, Any]:
        return id_token_claims(
            issuer=grant.issuer,
            subject=code.user_id,
            client_id=client.client_id,
            auth_time=code.auth_time if code.auth_time is not None else code.issued_at,
            ttl=grant.settings_tokens.id_token_ttl,
            now=family.issued_at,
            alg=alg,
            access_token=access_token,
            **code.authentication(),
        )

    return await grant.sign_id_token(build, client.id_token_signed_response_alg)


@dataclass(frozen=True, slots=True)
class AuthorizationCodeGrant:
    """The token endpoint's ``authorization_code`` entry: :func:`handle` for the
    authenticated client. Client authentication is required: confidential clients
    with their credentials, public ones with ``none`` (their ``client_id``), §4.1.3."""

    client_authentication: ClassVar[ClientAuthentication] = "required"
    codes: AuthorizationCodes
    issuer: str
    settings_tokens: IdTokenLifetime
    # Access tokens (``typ: at+jwt``) and ID tokens (``typ: JWT``) are signed apart.
    sign_id_token: SignIdToken
    issue_token: IssueToken

    async def issue(self, token_request: TokenRequest) -> dict[str, Any]:
        """Redeem the code and issue the tokens (:func:`handle` says what it raises)."""
        return await handle(token_request, self)
