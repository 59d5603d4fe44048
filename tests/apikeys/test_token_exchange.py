"""RFC 8693 token exchange of an API key (``bastion.apikeys.token_exchange``): request rules,
refusals, the issued claims.

A real ApiKeyService on SQLite verifies the keys; the signer is a stand-in that
records the claims (signing is tested in bastion.crypto and end to end).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bastion.apikeys import ApiKeyService, ApiKeySpec, state, token_exchange
from bastion.protocol import rfc8693
from bastion.protocol.rfc6749.errors import (
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    OAuthError,
    UnauthorizedClientError,
)
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.settings import Settings
from bastion.storage import Database, migrate
from bastion.storage.models import ApiKey
from bastion.storage.shared import SharedState, open_shared_state
from protocol.protocol_support import ISSUER, Authenticator, confidential, form_request

SETTINGS = Settings()
NOW = time.time()


class Signer:
    """Records the claims it is asked to sign."""

    def __init__(self) -> None:
        self.claims: list[dict[str, Any]] = []

    async def __call__(self, claims: Mapping[str, Any]) -> str:
        self.claims.append(dict(claims))
        return f"signed-{len(self.claims)}"


class Env:
    def __init__(self, service: ApiKeyService) -> None:
        self.service = service
        self.signer = Signer()

    async def key(self, **spec: Any) -> tuple[ApiKey, str]:
        spec.setdefault("name", "k")
        return await self.service.create(ApiKeySpec(**spec))

    async def exchange(
        self,
        form: Mapping[str, str | Iterable[str]],
        *,
        client: Any = None,
        ip: str | None = None,
        now: float | None = None,
        ttl: float = token_exchange.DEFAULT_TTL,
        audiences: Any = None,
        admit: Any = None,
    ) -> dict[str, Any]:
        return await token_exchange.handle(
            form_request(form),
            client,
            issuer=ISSUER,
            api_keys=self.service,
            issue_token=self.signer,
            settings_tokens=SETTINGS.tokens,
            ttl=ttl,
            ip=ip,
            now=now,
            audiences=audiences,
            admit=admit,
        )

    @property
    def last(self) -> dict[str, Any]:
        return self.signer.claims[-1]


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    await migrate(sqlite_url)
    db = await Database.connect(sqlite_url)
    shared: SharedState = await open_shared_state("memory://")
    try:
        yield Env(ApiKeyService(db, SETTINGS, shared))
    finally:
        await shared.close()
        await db.close()


def exchange_form(key: str, **extra: str | Iterable[str]) -> dict[str, str | Iterable[str]]:
    return {
        "grant_type": rfc8693.GRANT_TYPE,
        "subject_token": key,
        "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
        **extra,
    }


def test_constants() -> None:
    assert rfc8693.GRANT_TYPE == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert token_exchange.API_KEY_TOKEN_TYPE == "urn:bastion:params:oauth:token-type:api-key"
    assert rfc8693.ACCESS_TOKEN_TYPE == "urn:ietf:params:oauth:token-type:access_token"
    assert token_exchange.DEFAULT_TTL == 300
    assert sorted(token_exchange.__all__) == sorted(
        [
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
    )


async def test_exchange_issues_a_short_lived_token_for_the_key(env: Env) -> None:
    record, key = await env.key(scopes=["orders:read", "orders:write"])
    response = await env.exchange(exchange_form(key), now=NOW)
    assert response == {
        "access_token": "signed-1",
        "issued_token_type": rfc8693.ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "orders:read orders:write",
    }
    claims = env.last
    assert claims["iss"] == ISSUER
    assert claims["sub"] == f"apikey:{record.id}"
    assert claims["client_id"] == f"apikey:{record.id}"
    assert claims["aud"] == ISSUER
    assert claims["scope"] == "orders:read orders:write"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] == int(NOW)
    assert len(claims["jti"]) >= 20


async def test_subject_is_the_owner_when_the_key_has_one(env: Env) -> None:
    record, key = await env.key(owner_type="user", owner_id="u-42")
    response = await env.exchange(exchange_form(key))
    assert "scope" not in response
    assert env.last["sub"] == "user:u-42"
    assert env.last["client_id"] == f"apikey:{record.id}"
    assert "scope" not in env.last


async def test_scope_narrows_and_cannot_widen(env: Env) -> None:
    _, key = await env.key(scopes=["a", "b", "c"])
    response = await env.exchange(exchange_form(key, scope="c a"))
    assert response["scope"] == "c a"
    assert env.last["scope"] == "c a"
    with pytest.raises(InvalidScopeError) as caught:
        await env.exchange(exchange_form(key, scope="a admin"))
    assert caught.value.error_description == "scope 'admin' is not allowed for this API key"
    assert caught.value.status == 400
    with pytest.raises(InvalidScopeError):
        await env.exchange(exchange_form(key, scope='bad"scope'))


def by_route(table: dict[str, str]) -> Any:
    """An AllowedAudiences: the issuer plus the audience of each route the key may call."""

    def audiences(key: Any) -> frozenset[str]:
        names = key.routes or tuple(table)
        return frozenset({ISSUER, *(table[name] for name in names if name in table)})

    return audiences


ROUTE_AUDIENCES = {"orders": "https://api.example.com/orders", "users": "users"}


async def test_targets_are_limited_to_the_allowed_audiences(env: Env) -> None:
    audiences = by_route(ROUTE_AUDIENCES)
    _, key = await env.key(routes=["orders"])
    await env.exchange(exchange_form(key), audiences=audiences)
    # A key with routes: by default every audience it may obtain.
    assert env.last["aud"] == sorted([ISSUER, "https://api.example.com/orders"])
    assert env.last[token_exchange.KEY_ID_CLAIM] == env.last["client_id"].removeprefix("apikey:")
    await env.exchange(
        exchange_form(key, resource="https://api.example.com/orders"), audiences=audiences
    )
    assert env.last["aud"] == "https://api.example.com/orders"
    await env.exchange(exchange_form(key, audience=ISSUER), audiences=audiences)
    assert env.last["aud"] == ISSUER
    with pytest.raises(InvalidTargetError) as caught:
        await env.exchange(exchange_form(key, audience="users"), audiences=audiences)
    assert caught.value.error_description == "the API key may not obtain a token for 'users'"
    assert caught.value.reason == "audience_not_allowed"
    with pytest.raises(InvalidTargetError) as caught:
        await env.exchange(exchange_form(key, resource="not a uri"))
    assert caught.value.error_description == "resource must be an absolute URI without a fragment"
    with pytest.raises(InvalidTargetError) as caught:
        await env.exchange(exchange_form(key, audience=[f"a{i}" for i in range(11)]))
    assert caught.value.error_description == "at most 10 resource and audience values"


async def test_key_without_routes_gets_the_issuer_and_route_audiences_only(env: Env) -> None:
    audiences = by_route(ROUTE_AUDIENCES)
    _, key = await env.key()
    await env.exchange(exchange_form(key), audiences=audiences)
    assert env.last["aud"] == ISSUER  # not every audience at once
    await env.exchange(exchange_form(key, audience=["users", ISSUER]), audiences=audiences)
    assert env.last["aud"] == ["users", ISSUER]
    for stranger in ("x", ISSUER + "/admin/api"):
        with pytest.raises(InvalidTargetError):
            await env.exchange(exchange_form(key, audience=stranger), audiences=audiences)


async def test_without_an_audience_policy_only_the_issuer(env: Env) -> None:
    _, key = await env.key(routes=["orders"])
    await env.exchange(exchange_form(key))
    assert env.last["aud"] == ISSUER
    with pytest.raises(InvalidTargetError):
        await env.exchange(exchange_form(key, audience="orders"))


async def test_admit_may_refuse_before_a_token_is_minted(env: Env) -> None:
    _, key = await env.key()
    seen: list[str] = []

    async def admit(record: Any) -> None:
        seen.append(record.id)
        raise rfc8693.ExchangeRateLimitedError(7)

    with pytest.raises(rfc8693.ExchangeRateLimitedError) as caught:
        await env.exchange(exchange_form(key), admit=admit)
    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (
        429,
        "rate_limited",
        7,
    )
    assert caught.value.headers()["Retry-After"] == "7"
    assert len(seen) == 1


async def test_lifetime_never_exceeds_the_key(env: Env) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=120)
    _, key = await env.key(expires_at=expires)
    now = time.time()
    response = await env.exchange(exchange_form(key), now=now)
    assert response["expires_in"] == int(expires.timestamp() - now)
    assert response["expires_in"] <= 120
    # With less than a second left the key is as good as expired.
    with pytest.raises(InvalidRequestError) as caught:
        await env.exchange(exchange_form(key), now=expires.timestamp() - 0.5)
    assert caught.value.reason == "api_key_expires_now"
    # A shorter configured lifetime wins too.
    response = await env.exchange(exchange_form(key), ttl=30, now=now)
    assert response["expires_in"] == 30


async def test_rotated_key_tokens_end_with_the_grace_period(env: Env) -> None:
    record, key = await env.key()
    _, successor = await env.service.rotate(record.id, grace=60)
    now = time.time()
    response = await env.exchange(exchange_form(key), now=now)
    assert 58 <= response["expires_in"] <= 60
    response = await env.exchange(exchange_form(successor), now=now)
    assert response["expires_in"] == 300
    with pytest.raises(InvalidRequestError) as caught:
        await env.exchange(exchange_form(key), now=now + 61)
    assert caught.value.reason == "api_key_grace_ended"


def _bad_checksum(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


@pytest.mark.parametrize("state", ["malformed", "bad_checksum", "unknown", "revoked", "disabled"])
async def test_refused_keys_are_invalid_request_with_one_description(env: Env, state: str) -> None:
    record, key = await env.key()
    if state == "malformed":
        key = "not-a-key"
    elif state == "bad_checksum":
        key = _bad_checksum(key)
    elif state == "unknown":
        _, key = await env.key()
        await env.service.delete((await env.service.list()).items[-1].id)
    elif state == "revoked":
        await env.service.revoke(record.id)
    elif state == "disabled":
        await env.service.disable(record.id)
    with pytest.raises(InvalidRequestError) as caught:
        await env.exchange(exchange_form(key))
    error = caught.value
    assert error.error == "invalid_request"
    assert error.status == 400
    assert error.error_description == "the subject_token is not a valid API key"
    assert error.reason == f"api_key_{state}"
    assert key not in str(error.to_json())
    assert env.signer.claims == []


async def test_expired_key_is_refused(env: Env) -> None:
    _, key = await env.key(expires_at=datetime.now(UTC) + timedelta(seconds=5))
    with pytest.raises(InvalidRequestError) as caught:
        await env.exchange(exchange_form(key), now=time.time() + 10)
    assert caught.value.reason == "api_key_expired"
    assert caught.value.error_description == token_exchange.INVALID_SUBJECT_TOKEN


async def test_ip_allow_list_applies_to_the_exchange(env: Env) -> None:
    _, key = await env.key(ip_allow=["203.0.113.0/24"])
    for ip in ("198.51.100.1", None):
        with pytest.raises(InvalidRequestError) as caught:
            await env.exchange(exchange_form(key), ip=ip)
        assert caught.value.reason == "api_key_ip_not_allowed"
        assert caught.value.error_description == token_exchange.INVALID_SUBJECT_TOKEN
    # From an allowed address the key is genuine, but its token could not keep the
    # allow-list: refused too.
    with pytest.raises(InvalidRequestError) as caught:
        await env.exchange(exchange_form(key), ip="203.0.113.9")
    assert caught.value.reason == "api_key_ip_restricted"
    assert caught.value.error_description == (
        "an API key restricted to IP addresses cannot be exchanged for a token"
    )


@pytest.mark.parametrize(
    ("form", "description"),
    [
        (
            {"grant_type": rfc8693.GRANT_TYPE, "subject_token": "bst_x"},
            "missing parameter 'subject_token_type'",
        ),
        (
            {
                "grant_type": rfc8693.GRANT_TYPE,
                "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
            },
            "missing parameter 'subject_token'",
        ),
        (
            {
                "grant_type": rfc8693.GRANT_TYPE,
                "subject_token": "x",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            },
            "subject_token_type 'urn:ietf:params:oauth:token-type:jwt' is not supported; "
            "use urn:bastion:params:oauth:token-type:api-key",
        ),
        (
            {
                "grant_type": rfc8693.GRANT_TYPE,
                "subject_token": "x",
                "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
                "actor_token": "y",
                "actor_token_type": rfc8693.ACCESS_TOKEN_TYPE,
            },
            "delegation (actor_token) is not supported",
        ),
        (
            {
                "grant_type": rfc8693.GRANT_TYPE,
                "subject_token": "x",
                "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
                "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token",
            },
            "requested_token_type 'urn:ietf:params:oauth:token-type:refresh_token' is not "
            "supported; bastion issues urn:ietf:params:oauth:token-type:access_token",
        ),
    ],
)
async def test_malformed_requests(env: Env, form: dict[str, str], description: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await env.exchange(form)
    assert caught.value.error_description == description


async def test_requested_token_type_access_token_is_accepted(env: Env) -> None:
    _, key = await env.key()
    response = await env.exchange(
        exchange_form(key, requested_token_type=rfc8693.ACCESS_TOKEN_TYPE)
    )
    assert response["issued_token_type"] == rfc8693.ACCESS_TOKEN_TYPE


async def test_an_authenticated_client_must_be_allowed_the_grant(env: Env) -> None:
    _, key = await env.key(scopes=["a"])
    with pytest.raises(UnauthorizedClientError) as caught:
        await env.exchange(exchange_form(key), client=confidential())
    assert caught.value.error_description == (
        "the client is not allowed to use the token-exchange grant"
    )
    allowed = confidential(grant_types=("client_credentials", rfc8693.GRANT_TYPE))
    response = await env.exchange(exchange_form(key), client=allowed)
    assert response["scope"] == "a"
    assert env.last["client_id"].startswith("apikey:")


def _exchange_endpoint(env: Env, **policy: Any) -> TokenEndpoint:
    return TokenEndpoint(
        {
            rfc8693.GRANT_TYPE: token_exchange.TokenExchangeGrant(
                issuer=ISSUER,
                api_keys=env.service,
                issue_token=env.signer,
                settings_tokens=SETTINGS.tokens,
                **policy,
            )
        }
    )


async def test_exchange_grant_plugs_into_the_token_endpoint(env: Env) -> None:
    _, key = await env.key()
    endpoint = _exchange_endpoint(env)
    client = confidential(grant_types=(rfc8693.GRANT_TYPE,))
    authenticate = Authenticator(client)
    credentials = [("Authorization", "Basic c3ZjOnNlY3JldA==")]
    request = form_request(exchange_form(key), headers=credentials)
    response = await endpoint.handle(request, authenticate)
    assert response["token_type"] == "Bearer"
    assert authenticate.calls == 1
    assert rfc8693.GRANT_TYPE in endpoint.grant_types


async def test_the_exchange_grant_needs_no_client_authentication(env: Env) -> None:
    # RFC 8693 section 2.1: the key is the credential; the table does not authenticate.
    _, key = await env.key(scopes=["a"])
    authenticate = Authenticator(None)
    response = await _exchange_endpoint(env).handle(form_request(exchange_form(key)), authenticate)
    assert response["scope"] == "a"
    assert authenticate.calls == 0
    # Credentials that are sent must authenticate.
    with pytest.raises(OAuthError) as caught:
        await _exchange_endpoint(env).handle(
            form_request(exchange_form(key, client_id="svc")), authenticate
        )
    assert caught.value.code == "invalid_client"
    assert authenticate.calls == 1


async def test_the_exchange_grant_checks_the_callers_address(env: Env) -> None:
    _, key = await env.key(ip_allow=["192.0.2.0/24"])
    endpoint = _exchange_endpoint(env)
    with pytest.raises(InvalidRequestError) as caught:
        await endpoint.handle(
            form_request(exchange_form(key)), Authenticator(None), client_ip="198.51.100.1"
        )
    assert caught.value.reason == "api_key_ip_not_allowed"
    with pytest.raises(InvalidRequestError) as caught:
        await endpoint.handle(
            form_request(exchange_form(key)), Authenticator(None), client_ip="192.0.2.7"
        )
    assert caught.value.reason == "api_key_ip_restricted"


def test_sends_client_credentials() -> None:
    assert not rfc8693.sends_client_credentials(form_request({"grant_type": "x"}))
    assert rfc8693.sends_client_credentials(form_request({"client_id": "a"}))
    assert rfc8693.sends_client_credentials(form_request({"client_assertion_type": "a"}))
    assert rfc8693.sends_client_credentials(
        form_request({}, headers=[("Authorization", "Basic eDp5")])
    )
    assert isinstance(form_request({}), OAuthRequest)


async def test_with_api_keys_follows_the_key_state(env: Env) -> None:
    record, _ = await env.key()
    seen: list[str] = []

    async def clients(client_id: str) -> bool:
        seen.append(client_id)
        return client_id == "svc"

    is_active = token_exchange.with_api_keys(clients, env.service)
    client_id = f"apikey:{record.id}"
    assert await is_active(client_id)
    assert await is_active("svc")
    assert not await is_active("other")
    assert seen == ["svc", "other"]
    assert not await is_active("apikey:")
    assert not await is_active("apikey:" + "0" * 32)
    await env.service.disable(record.id)
    assert not await is_active(client_id)
    await env.service.enable(record.id)
    assert await is_active(client_id)
    await env.service.revoke(record.id)
    assert not await is_active(client_id)
    assert await token_exchange.with_api_keys(None, env.service)("anything")


def test_key_is_usable() -> None:
    at = datetime.now(UTC)
    now = at.timestamp()
    key = ApiKey(digest="d", prefix="bst_x")
    assert state.key_is_usable(key, now)
    assert not state.key_is_usable(replace(key, disabled=True), now)
    assert not state.key_is_usable(replace(key, revoked_at=at), now)
    assert not state.key_is_usable(replace(key, expires_at=at), now)
    assert not state.key_is_usable(replace(key, grace_until=at), now)
    assert state.key_is_usable(replace(key, grace_until=at + timedelta(seconds=1)), now)


def test_errors_are_oauth_errors() -> None:
    assert issubclass(InvalidRequestError, OAuthError)
