"""API key → access token exchange at POST /oauth2/token, over HTTP against a real runtime."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest

from bastion.apikeys import ApiKeySpec, token_exchange
from bastion.crypto import InvalidTokenError
from bastion.http.endpoints import create_full_app
from bastion.oauth.clients import ClientSpec
from bastion.protocol import rfc8693
from bastion.runtime import Runtime

TOKEN = "/oauth2/token"


def exchange_form(key: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": rfc8693.GRANT_TYPE,
        "subject_token": key,
        "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
        **extra,
    }


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def new_key(runtime: Runtime, **spec: Any) -> tuple[Any, str]:
    spec.setdefault("name", "svc")
    result: tuple[Any, str] = await runtime.api_keys.create(ApiKeySpec(**spec))  # type: ignore[attr-defined]
    return result


async def test_metadata_lists_the_grant(http: httpx.AsyncClient) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert rfc8693.GRANT_TYPE in metadata["grant_types_supported"]
    assert "client_credentials" in metadata["grant_types_supported"]


async def test_exchange_without_client_authentication(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    record, key = await new_key(runtime, scopes=["orders:read", "orders:write"])
    response = await http.post(TOKEN, data=exchange_form(key, scope="orders:read"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "orders:read"
    # bastion's own verifier accepts it while the key is valid …
    claims = await runtime.access_tokens.verify(body["access_token"])
    assert claims["client_id"] == f"apikey:{record.id}"
    assert claims["sub"] == f"apikey:{record.id}"
    assert claims["aud"] == runtime.settings.issuer_url
    # … introspection reports it active, and revoking the key ends the token at once.
    await runtime.api_keys.revoke(record.id)  # type: ignore[attr-defined]
    with pytest.raises(InvalidTokenError) as caught:
        await runtime.access_tokens.verify(body["access_token"])
    assert caught.value.reason == "client_disabled"
    response = await http.post(TOKEN, data=exchange_form(key))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "the subject_token is not a valid API key",
    }


@pytest.mark.parametrize("variant", ["unknown", "bad_checksum", "malformed"])
async def test_refused_keys_get_one_answer(
    runtime: Runtime, http: httpx.AsyncClient, variant: str
) -> None:
    _, key = await new_key(runtime)
    if variant == "unknown":
        key = key[:-7] + key[-7:]  # same key, then deleted below
        await runtime.api_keys.delete((await runtime.api_keys.list()).items[-1].id)  # type: ignore[attr-defined]
    elif variant == "bad_checksum":
        key = key[:-1] + ("A" if key[-1] != "A" else "B")
    else:
        key = "bst_short"
    response = await http.post(TOKEN, data=exchange_form(key))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "the subject_token is not a valid API key",
    }
    assert key not in response.text


async def test_scope_beyond_the_key(runtime: Runtime, http: httpx.AsyncClient) -> None:
    _, key = await new_key(runtime, scopes=["orders:read"])
    response = await http.post(TOKEN, data=exchange_form(key, scope="orders:write"))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_scope",
        "error_description": "scope 'orders:write' is not allowed for this API key",
    }


async def test_target_restricted_to_the_issuer_without_routes(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    # No gateway route here: the issuer (bastion's default API audience) is all a key gets.
    _, key = await new_key(runtime, routes=["https://api.example.com/orders"])
    response = await http.post(TOKEN, data=exchange_form(key))
    assert response.status_code == 200
    assert claims_of(response.json()["access_token"])["aud"] == runtime.settings.issuer_url
    response = await http.post(
        TOKEN, data=exchange_form(key, resource="https://api.example.com/orders")
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_target",
        "error_description": "the API key may not obtain a token for "
        "'https://api.example.com/orders'",
    }


async def test_ip_allow_list_uses_the_caller_address(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    _, allowed = await new_key(runtime, ip_allow=["198.51.100.0/24"])
    _, elsewhere = await new_key(runtime, ip_allow=["203.0.113.0/24"])
    # From an allowed address: genuine, but not exchangeable (its token would work anywhere).
    response = await http.post(TOKEN, data=exchange_form(allowed))
    assert response.status_code == 400
    assert response.json()["error_description"] == (
        "an API key restricted to IP addresses cannot be exchanged for a token"
    )
    # X-Forwarded-For from an untrusted peer is ignored: the one collapsed answer.
    response = await http.post(
        TOKEN, data=exchange_form(elsewhere), headers={"x-forwarded-for": "203.0.113.5"}
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "the subject_token is not a valid API key",
    }


async def test_client_credentials_when_sent_must_be_valid_and_allowed(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    _, key = await new_key(runtime, scopes=["a"])
    plain, plain_secret = await runtime.clients.create(
        ClientSpec(name="plain", grant_types=["client_credentials"], scopes=["a"])
    )
    allowed, allowed_secret = await runtime.clients.create(
        ClientSpec(name="exchanger", grant_types=[rfc8693.GRANT_TYPE])
    )
    assert plain_secret is not None and allowed_secret is not None
    response = await http.post(
        TOKEN, data=exchange_form(key), auth=(plain.client_id, "wrong-secret")
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"] == 'Basic realm="bastion"'
    response = await http.post(TOKEN, data=exchange_form(key), auth=(plain.client_id, plain_secret))
    assert response.status_code == 400
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "the client is not allowed to use the token-exchange grant",
    }
    response = await http.post(
        TOKEN, data=exchange_form(key), auth=(allowed.client_id, allowed_secret)
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "a"


async def test_other_grants_still_work(runtime: Runtime, http: httpx.AsyncClient) -> None:
    client, secret = await runtime.clients.create(
        ClientSpec(name="cc", grant_types=["client_credentials"], scopes=["a"])
    )
    assert secret is not None
    response = await http.post(
        TOKEN, data={"grant_type": "client_credentials"}, auth=(client.client_id, secret)
    )
    assert response.status_code == 200
    response = await http.post(TOKEN, data={"grant_type": "password"})
    assert response.status_code == 401  # no client authentication: refused before the grant


async def test_forwarded_address_is_believed_from_a_trusted_proxy(runtime: Runtime) -> None:
    _, key = await new_key(runtime, ip_allow=["203.0.113.0/24"])
    transport = httpx.ASGITransport(app=create_full_app(runtime), client=("10.9.9.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as proxied:
        # The forwarded address is allowed: the key is genuine, refused for its allow-list.
        response = await proxied.post(
            TOKEN,
            data=exchange_form(key),
            headers={"x-forwarded-for": "192.0.2.1, 203.0.113.5"},
        )
        assert response.status_code == 400, response.text
        assert "restricted to IP addresses" in response.json()["error_description"]
        response = await proxied.post(
            TOKEN, data=exchange_form(key), headers={"x-forwarded-for": "192.0.2.1"}
        )
        assert response.status_code == 400
        assert response.json()["error_description"] == "the subject_token is not a valid API key"
