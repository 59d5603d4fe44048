"""The admin API's JSON shapes (pydantic): request bodies are strict and refuse unknown members.

Requests only check types and sizes; what a valid client is (scope syntax,
redirect URIs, auth method vs. client type …) is decided by
:class:`bastion.oauth.clients.ClientService`, whose ``invalid_client_metadata``
errors name the field; what a valid API key is (scope syntax, CIDRs, rate
limits …) by :class:`bastion.apikeys.ApiKeyService` (``invalid_api_key_metadata``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from bastion.oauth.views import client_view

# The client document's one home is bastion.oauth.views (the CLI shows it too).
client_out = client_view

__all__ = [
    "ApiKeyCreate",
    "ApiKeyList",
    "ApiKeyOut",
    "ApiKeyUpdate",
    "ApiKeyWithSecret",
    "ClientCreate",
    "ClientList",
    "ClientOut",
    "ClientSecretOut",
    "ClientUpdate",
    "ClientWithSecret",
    "KeyLimitsOut",
    "KeyLimitsUpdate",
    "Problem",
    "RotateApiKey",
    "RotateSecret",
    "client_out",
]

_MAX_ITEMS = 100

Name = Annotated[str, Field(min_length=1, max_length=255)]
Token = Annotated[str, Field(min_length=1, max_length=2048)]
TokenList = Annotated[list[Token], Field(max_length=_MAX_ITEMS)]
Ttl = Annotated[int, Field(ge=1, le=10 * 365 * 86400)]
AuthMethodName = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


_SCOPES_DOC = (
    "Scopes the client may be granted. The reserved scope bastion:introspect allows the "
    "client to call POST /oauth2/introspect (no other client may)."
)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


#: OIDC Registration §2: one of ``signing_keys.id_token_algorithms`` (checked by the service,
#: whose refusal names them); ``null`` on create or update: the server's default.
IdTokenAlg = Annotated[
    str,
    Field(
        max_length=32,
        description="JWS algorithm of the client's ID tokens: one of "
        "signing_keys.id_token_algorithms (ES256, RS256 by default); default: the first.",
    ),
]


class ClientCreate(_Request):
    """A new client. Omitted members take the defaults of the client type."""

    name: Name
    client_type: Literal["confidential", "public"] = "confidential"
    token_endpoint_auth_method: AuthMethodName | None = None
    grant_types: TokenList | None = None
    scopes: Annotated[TokenList, Field(description=_SCOPES_DOC)] = []
    audiences: TokenList = []
    access_token_ttl: Ttl | None = None
    redirect_uris: TokenList = []
    jwks: dict[str, Any] | None = None
    metadata: dict[str, Any] = {}
    id_token_signed_response_alg: IdTokenAlg | None = None
    post_logout_redirect_uris: TokenList = []
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False


class ClientUpdate(_Request):
    """Members to change; members left out keep their value, ``null`` clears a nullable one."""

    name: Name | None = None
    token_endpoint_auth_method: AuthMethodName | None = None
    grant_types: TokenList | None = None
    scopes: Annotated[TokenList | None, Field(description=_SCOPES_DOC)] = None
    audiences: TokenList | None = None
    access_token_ttl: Ttl | None = None
    redirect_uris: TokenList | None = None
    jwks: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    id_token_signed_response_alg: IdTokenAlg | None = None
    post_logout_redirect_uris: TokenList | None = None
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool | None = None


class RotateSecret(_Request):
    """How long the previous secrets keep working (default: ``tokens.client_secret_grace``)."""

    grace_seconds: Annotated[float, Field(ge=0, le=10 * 365 * 86400)] | None = None


class ClientSecretOut(BaseModel):
    """A stored secret as listings show it: never the secret or its digest."""

    id: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None


class ClientOut(BaseModel):
    """A registered client."""

    client_id: str
    name: str
    client_type: Literal["confidential", "public"]
    token_endpoint_auth_method: str
    grant_types: list[str]
    scopes: list[str]
    audiences: list[str]
    access_token_ttl: int | None
    redirect_uris: list[str]
    jwks: dict[str, Any] | None
    metadata: dict[str, Any]
    id_token_signed_response_alg: str | None
    post_logout_redirect_uris: list[str]
    backchannel_logout_uri: str | None
    backchannel_logout_session_required: bool
    disabled: bool
    created_at: datetime
    updated_at: datetime
    secrets: list[ClientSecretOut]


class ClientWithSecret(ClientOut):
    """A client with its new secret — returned once, by create and rotate-secret."""

    client_secret: str | None = Field(
        description="Shown only in this response; store it now. null when the client has none."
    )


class ClientList(BaseModel):
    """One page of clients; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ClientOut]
    next_cursor: str | None


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    reason: str
    request_id: str
    field: str | None = None
    errors: list[dict[str, Any]] | None = None


# ---------------------------------------------------------------------------
# API keys

OwnerTypeName = Literal["user", "client"]
RateLimitList = Annotated[list[dict[str, Any]], Field(max_length=20)]
ApiKeyStatus = Literal["active", "grace", "rotated", "expired", "revoked", "disabled"]


class ApiKeyCreate(_Request):
    """A new API key. ``expires_at`` is an RFC 3339 time with an offset; omitted: never."""

    name: Name
    owner_type: OwnerTypeName | None = None
    owner_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    scopes: TokenList = []
    routes: TokenList = []
    expires_at: AwareDatetime | None = None
    rate_limits: RateLimitList = []
    ip_allow: TokenList = []
    metadata: dict[str, Any] = {}


class ApiKeyUpdate(_Request):
    """Members to change; members left out keep their value, ``null`` clears ``expires_at``."""

    name: Name | None = None
    scopes: TokenList | None = None
    routes: TokenList | None = None
    expires_at: AwareDatetime | None = None
    rate_limits: RateLimitList | None = None
    ip_allow: TokenList | None = None
    metadata: dict[str, Any] | None = None
    disabled: bool | None = None


class RotateApiKey(_Request):
    """How long the rotated key keeps working (default: ``api_keys.default_grace``)."""

    grace_seconds: Annotated[float, Field(ge=0, le=10 * 365 * 86400)] | None = None


class ApiKeyOut(BaseModel):
    """A stored API key as the admin API shows it: its display prefix, never the key or digest."""

    id: str
    prefix: str = Field(description="The non-secret start of the key, for recognising it")
    name: str
    status: ApiKeyStatus = Field(
        description="active; grace (rotated, works until grace_until); rotated (grace over); "
        "expired (past expires_at); revoked; disabled"
    )
    owner_type: OwnerTypeName | None
    owner_id: str | None
    scopes: list[str]
    routes: list[str]
    expires_at: datetime | None
    rate_limits: list[dict[str, Any]]
    ip_allow: list[str]
    metadata: dict[str, Any]
    disabled: bool
    revoked_at: datetime | None
    rotated_from: str | None
    grace_until: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    created_at: datetime
    updated_at: datetime


class ApiKeyWithSecret(ApiKeyOut):
    """A key with its full value — returned once, by create and rotate."""

    key: str = Field(description="The full API key: shown only in this response; store it now.")


class ApiKeyList(BaseModel):
    """One page of API keys; pass ``next_cursor`` as ``cursor`` for the next page."""

    items: list[ApiKeyOut]
    next_cursor: str | None


class KeyLimit(_Request):
    """One per-key rate limit."""

    rate: Annotated[str, Field(min_length=1, max_length=40, examples=["100/minute"])]
    burst: Annotated[int, Field(ge=1, le=10**9)] | None = None


class KeyLimitsUpdate(_Request):
    """A runtime override of a key's limits (replaces its stored ``rate_limits``)."""

    limits: Annotated[list[KeyLimit], Field(min_length=1, max_length=20)]


class KeyLimitOut(BaseModel):
    """A limit as applied: the rate and the bucket size."""

    rate: str
    burst: int


class KeyLimitUsage(KeyLimitOut):
    """A limit's state now: requests admitted right now, seconds until the bucket is full."""

    remaining: int
    reset: float


class KeyLimitsOut(BaseModel):
    """A key's effective limits (override, else its own) and their current usage."""

    key_id: str
    source: Literal["override", "key", "none"]
    key_limits: list[KeyLimitOut]
    override: list[KeyLimitOut] | None
    limits: list[KeyLimitOut]
    usage: list[KeyLimitUsage] | None = Field(
        description="Current state of each limit (null when not observable from this node)"
    )
