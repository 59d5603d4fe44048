"""API keys exchanged for access tokens: the RFC 8693 grant whose subject token is an API key.

The protocol's own rules (parameters, targets, the response) are
:mod:`bastion.protocol.rfc8693`; this module is what bastion does with its API keys.

bastion accepts one kind of subject token: its own API keys, with
``subject_token_type`` = :data:`API_KEY_TOKEN_TYPE`. The key is the
credential (§2.1 makes client authentication optional for this grant), and the
result is a short-lived RFC 9068 JWT access token that services verify
offline against bastion's JWKS — no call to bastion per request.

Request (§2.1) and rules applied:

- ``subject_token`` (the key) and ``subject_token_type`` are required; any
  other subject token type, an ``actor_token`` (delegation) or a
  ``requested_token_type`` other than :data:`ACCESS_TOKEN_TYPE` is
  ``invalid_request``;
- the key is verified like at the gateway (format, checksum, expiry,
  revocation, disabled, rotation grace, IP allow-list). A key *with* an IP
  allow-list is then refused all the same (``invalid_request``, reason
  ``api_key_ip_restricted``): a bearer token cannot carry the restriction to
  the services that accept it, so it would work from anywhere. A refused key is
  ``invalid_request`` with one collapsed description whatever the reason
  (§2.2.2: "If … the subject_token … [is] invalid for any reason … the value
  of the error parameter MUST be the invalid_request error code"); the
  precise reason is the error's ``reason``, for the audit log;
- ``scope`` narrows the key's scopes; a scope the key does not have is
  ``invalid_scope``; absent, the token carries all of the key's scopes;
- ``resource`` (absolute URIs, RFC 8707) and ``audience`` (logical names)
  name the targets (§2.1; both repeatable, at most :data:`MAX_TARGETS`). Each
  must be one of the audiences the key may obtain (else ``invalid_target``,
  §2.2.2): the caller's :data:`AllowedAudiences` says which — in bastion the
  issuer (the default API audience) and the ``jwt`` audience of every gateway
  route the key may call, never the admin API's. Without that callable only
  the issuer may be obtained. The token's ``aud`` is the requested targets,
  else, for a key with ``routes``, every audience it may obtain, else the issuer;
- before a token is minted the caller's :data:`Admit` hook may refuse the key
  (bastion: a per-key rate of exchanges, ``api_keys.exchange_rate``), raising
  :class:`ExchangeRateLimitedError` (429 ``rate_limited``, ``Retry-After``);
- the token lives :data:`DEFAULT_TTL` seconds (5 minutes), never beyond the
  key's own expiry or rotation grace, nor the configured maximum;
- claims: ``sub`` = ``"<owner_type>:<owner_id>"`` when the key has an owner,
  else ``"apikey:<key id>"``; ``client_id`` = ``"apikey:<key id>"`` (see
  :func:`with_api_keys`, which lets the access-token verifier treat such a
  client id as active exactly while the key is valid) and :data:`KEY_ID_CLAIM`
  = the key id, by which the gateway applies the key's own rate limits and
  route restriction to the token;
- when a client *does* authenticate, it must be registered for this grant
  (``unauthorized_client`` otherwise); the token is still the key's.

Response (§2.2.1): ``access_token``, ``issued_token_type`` =
:data:`ACCESS_TOKEN_TYPE`, ``token_type: Bearer``, ``expires_in`` and
``scope`` (when not empty). No refresh token.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

from bastion.apikeys.errors import ApiKeyIPNotAllowedError, InvalidApiKeyError
from bastion.apikeys.state import (
    API_KEY_CLIENT_PREFIX,
    api_key_client_id,
    api_key_subject,
    key_is_usable,
)
from bastion.crypto.apikeys import ApiKeyFormatError
from bastion.crypto.digests import random_token
from bastion.protocol.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    UnauthorizedClientError,
)
from bastion.protocol.rfc6749.grants import ClientAuthentication, IssueToken, TokenRequest
from bastion.protocol.rfc6749.grants.client_credentials import TokenLifetimes
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc6749.scope import format_scope, parse_scope
from bastion.protocol.rfc8693 import (
    GRANT_TYPE,
    echo,
    requested_targets,
    subject_token,
    token_response,
)
from bastion.protocol.rfc9068 import access_token_claims
from bastion.storage.errors import NotFoundError
from bastion.storage.models import ApiKey, Client

__all__ = [
    "API_KEY_TOKEN_TYPE",
    "DEFAULT_TTL",
    "INVALID_SUBJECT_TOKEN",
    "KEY_ID_CLAIM",
    "Admit",
    "AllowedAudiences",
    "ApiKeyLookup",
    "ApiKeyVerifier",
    "ClientIsActive",
    "TokenExchangeGrant",
    "handle",
    "with_api_keys",
]

#: The ``subject_token_type`` naming a bastion API key (a private URN, RFC 8693 §3).
API_KEY_TOKEN_TYPE: Final = "urn:bastion:params:oauth:token-type:api-key"  # noqa: S105
#: Seconds an exchanged access token lives (capped by the key's own lifetime).
DEFAULT_TTL: Final = 300
#: The one description of every refused subject token (the reason goes to the audit log).
INVALID_SUBJECT_TOKEN: Final = "the subject_token is not a valid API key"  # noqa: S105

#: The claim carrying the id of the key a token was exchanged from.
KEY_ID_CLAIM: Final = "key_id"

ClientIsActive = Callable[[str], Awaitable[bool]]
#: ``key -> the audiences it may obtain a token for``.
AllowedAudiences = Callable[[ApiKey], Collection[str]]
#: ``key -> None``, awaited before a token is minted; raises to refuse (e.g. a rate).
Admit = Callable[[ApiKey], Awaitable[None]]


class ApiKeyVerifier(Protocol):
    """What the exchange needs from the key service (``ApiKeyService``)."""

    async def verify(self, key: str, *, ip: str | None = None, now: float | None = None) -> ApiKey:
        """The stored key for a presented one, valid now.

        Raises InvalidApiKeyError (``reason`` says why) or ApiKeyIPNotAllowedError.
        """
        ...


class ApiKeyLookup(Protocol):
    """Reads one key record by id from a cache that every change to the key drops
    (``ApiKeyService.get_cached``: invalidated on the ``"api-keys"`` channel)."""

    async def get_cached(self, key_id: str) -> ApiKey:
        """The key; raises NotFoundError if none."""
        ...


def with_api_keys(
    client_is_active: ClientIsActive | None, api_keys: ApiKeyLookup
) -> ClientIsActive:
    """Extend an access-token verifier's ``client_is_active`` to tokens from API keys.

    ``apikey:<id>`` is active exactly while the key is usable (see
    :func:`key_is_usable`), read from ``api_keys``' cache, which every change
    to a key drops on every node: a revocation or a disabled key takes effect on
    the next verification, without a database read per token. Any other client
    id goes to ``client_is_active`` (``None``: active).
    """

    async def is_active(client_id: str) -> bool:
        if client_id.startswith(API_KEY_CLIENT_PREFIX):
            key_id = client_id[len(API_KEY_CLIENT_PREFIX) :]
            if not key_id:
                return False
            try:
                key = await api_keys.get_cached(key_id)
            except NotFoundError:
                return False
            return key_is_usable(key, time.time())
        if client_is_active is None:
            return True
        return await client_is_active(client_id)

    return is_active


async def _verify(api_keys: ApiKeyVerifier, key: str, ip: str | None, now: float) -> ApiKey:
    try:
        return await api_keys.verify(key, ip=ip, now=now)
    except (InvalidApiKeyError, ApiKeyFormatError) as error:
        raise InvalidRequestError(
            INVALID_SUBJECT_TOKEN, reason=f"api_key_{getattr(error, 'reason', 'invalid')}"
        ) from None
    except ApiKeyIPNotAllowedError:
        raise InvalidRequestError(INVALID_SUBJECT_TOKEN, reason="api_key_ip_not_allowed") from None


def _ttl(key: ApiKey, wanted: float, settings_tokens: TokenLifetimes, now: float) -> int:
    limit = min(wanted, settings_tokens.max_access_token_ttl)
    for deadline in (key.expires_at, key.grace_until):
        if deadline is not None:
            limit = min(limit, deadline.timestamp() - now)
    seconds = math.floor(limit)
    if seconds < 1:
        # Less than a second of validity left: the key is as good as expired.
        raise InvalidRequestError(INVALID_SUBJECT_TOKEN, reason="api_key_expires_now")
    return seconds


@dataclass(frozen=True, slots=True)
class TokenExchangeGrant:
    """The token endpoint's entry for this grant: :func:`handle` with its dependencies.

    Client authentication is optional (§2.1): the key is the credential; a
    client that sends credentials must authenticate and be registered for the
    grant. The caller's address from the :class:`TokenRequest` is checked
    against the key's IP allow-list.
    """

    issuer: str
    api_keys: ApiKeyVerifier
    issue_token: IssueToken
    settings_tokens: TokenLifetimes
    ttl: float = DEFAULT_TTL
    audiences: AllowedAudiences | None = None
    admit: Admit | None = None
    client_authentication: ClassVar[ClientAuthentication] = "optional"

    async def issue(self, token_request: TokenRequest) -> dict[str, Any]:
        """Exchange the request's API key (see :func:`handle` for what it raises)."""
        return await handle(
            token_request.request,
            token_request.client,
            issuer=self.issuer,
            api_keys=self.api_keys,
            issue_token=self.issue_token,
            settings_tokens=self.settings_tokens,
            ttl=self.ttl,
            ip=token_request.client_ip,
            audiences=self.audiences,
            admit=self.admit,
        )


async def handle(
    request: OAuthRequest,
    client: Client | None,
    *,
    issuer: str,
    api_keys: ApiKeyVerifier,
    issue_token: IssueToken,
    settings_tokens: TokenLifetimes,
    ttl: float = DEFAULT_TTL,
    ip: str | None = None,
    now: float | None = None,
    audiences: AllowedAudiences | None = None,
    admit: Admit | None = None,
) -> dict[str, Any]:
    """Exchange the API key in ``request`` for an access token.

    ``client`` is the authenticated client, or ``None`` when the request
    carried no client authentication (the key alone is the credential). ``ip``
    is the caller's address, checked against the key's IP allow-list.
    ``audiences`` says which audiences a key may obtain (``None``: only
    ``issuer``); ``admit`` may refuse the key before a token is minted.

    Returns the token response members (RFC 8693 §2.2.1).

    Raises:
        UnauthorizedClientError: an authenticated client not registered for this grant.
        InvalidRequestError: a missing or unsupported parameter, or a refused key
            (``reason`` ``api_key_<why>``; ``api_key_ip_restricted`` for a key
            with an IP allow-list).
        InvalidScopeError: a malformed scope or one the key does not have.
        InvalidTargetError: a malformed target, too many, or one the key may not obtain.
        ExchangeRateLimitedError: (from ``admit``) the key exchanged too often.
    """
    if client is not None and GRANT_TYPE not in client.grant_types:
        raise UnauthorizedClientError("the client is not allowed to use the token-exchange grant")
    presented = subject_token(request, API_KEY_TOKEN_TYPE)
    requested_scope = request.form.get("scope")
    requested = parse_scope(requested_scope) if requested_scope is not None else None
    targets = requested_targets(request)
    current = time.time() if now is None else now

    key = await _verify(api_keys, presented, ip, current)
    if key.ip_allow:
        # A bearer token cannot carry the allow-list to the services that accept it.
        raise InvalidRequestError(
            "an API key restricted to IP addresses cannot be exchanged for a token",
            reason="api_key_ip_restricted",
        )

    if requested is None:
        scopes: Sequence[str] = key.scopes
    else:
        for token in requested:
            if token not in key.scopes:
                raise InvalidScopeError(f"scope '{token}' is not allowed for this API key")
        scopes = requested
    allowed = frozenset(audiences(key)) if audiences is not None else frozenset((issuer,))
    for target in targets:
        if target not in allowed:
            raise InvalidTargetError(
                f"the API key may not obtain a token for '{echo(target)}'",
                reason="audience_not_allowed",
            )
    audience: str | list[str]
    if targets:
        audience = list(targets)
    elif key.routes and allowed:
        audience = sorted(allowed)
    else:
        audience = issuer
    seconds = _ttl(key, ttl, settings_tokens, current)
    if admit is not None:
        await admit(key)
    scope = format_scope(scopes)
    claims = access_token_claims(
        issuer=issuer,
        subject=api_key_subject(key),
        audience=audience,
        client_id=api_key_client_id(key),
        scope=scope,
        ttl=seconds,
        now=current,
        jti=random_token(16),
        extra={KEY_ID_CLAIM: key.id},
    )
    return token_response(await issue_token(claims), seconds, scope)
