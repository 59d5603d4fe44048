"""End to end over real TCP: an API key becomes a JWT that anyone can verify from the JWKS.

bastion's app runs under uvicorn on a free loopback port; httpx talks to it;
the token is verified by an independent library (jwcrypto) using nothing but
the published JWKS. It is never an admin API credential: the admin audience
cannot be obtained, and the token bastion does issue is refused there.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from jwcrypto import jwk, jwt

from _support import free_port
from bastion.apikeys import ApiKeySpec, token_exchange
from bastion.crypto import InvalidTokenError
from bastion.http.endpoints import create_full_app
from bastion.http.endpoints.admin import KEYS_PATH, admin_audience
from bastion.protocol import rfc8693
from bastion.runtime import Runtime


@pytest.fixture
async def base_url(runtime: Runtime) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_full_app(runtime), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_api_key_to_jwt_verified_by_jwks_and_never_an_admin_credential(
    runtime: Runtime, base_url: str
) -> None:
    admin = admin_audience(runtime.settings.issuer_url)
    record, key = await runtime.api_keys.create(  # type: ignore[attr-defined]
        ApiKeySpec(
            name="ops-bot",
            owner_type="user",
            owner_id="ops",
            scopes=["bastion:admin:read", "reports:read"],
            routes=[admin, "reports"],
        )
    )
    form = {
        "grant_type": rfc8693.GRANT_TYPE,
        "subject_token": key,
        "subject_token_type": token_exchange.API_KEY_TOKEN_TYPE,
        "scope": "bastion:admin:read",
    }
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        refused = await http.post("/oauth2/token", data={**form, "resource": admin})
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_target"

        response = await http.post("/oauth2/token", data=form)
        assert response.status_code == 200, response.text
        token = response.json()
        assert token["issued_token_type"] == rfc8693.ACCESS_TOKEN_TYPE
        assert token["scope"] == "bastion:admin:read"

        jwks = (await http.get("/oauth2/jwks.json")).json()
        keyset = jwk.JWKSet.from_json(json.dumps(jwks))
        verified = jwt.JWT(
            jwt=token["access_token"], key=keyset, algs=["ES256"], expected_type="JWS"
        )
        header = json.loads(verified.header)
        assert header["typ"] == "at+jwt"
        claims = json.loads(verified.claims)
        assert claims["iss"] == runtime.settings.issuer_url
        assert claims["sub"] == "user:ops"
        assert claims["client_id"] == f"apikey:{record.id}"
        assert claims["key_id"] == record.id
        assert claims["aud"] == runtime.settings.issuer_url
        assert claims["scope"] == "bastion:admin:read"
        assert claims["exp"] - claims["iat"] == token["expires_in"] == 300

        bearer = {"authorization": f"Bearer {token['access_token']}"}
        listed = await http.get(KEYS_PATH, headers=bearer)
        assert listed.status_code == 401
        assert listed.json()["reason"] == "invalid_token"
        assert key not in listed.text

        # Verifiable until the key is revoked; then neither the token nor the key works.
        await runtime.access_tokens.verify(token["access_token"])
        await runtime.api_keys.revoke(record.id)  # type: ignore[attr-defined]
        with pytest.raises(InvalidTokenError) as caught:
            await runtime.access_tokens.verify(token["access_token"])
        assert caught.value.reason == "client_disabled"
        again = await http.post("/oauth2/token", data=form)
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_request"
