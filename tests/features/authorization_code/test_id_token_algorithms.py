"""End to end: ID tokens signed with the algorithm each client registered (ES256 or RS256).

Over HTTPS against ``bastion serve``: a public client is seeded on the server's database
(the authorization endpoint that will issue codes is not built yet), its
``id_token_signed_response_alg`` set with ``bastion clients update --id-token-alg``; a
code seeded through the service is redeemed at ``/oauth2/token``. The ID token is
verified with joserfc against the JWKS bastion publishes — with the one algorithm the
client expects — and its ``at_hash`` recomputed by hand (OIDC Core §3.1.3.6: SHA-256 for
both). An algorithm bastion does not offer is refused when registered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from typing import Any

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from _support import EchoThread, run_cli
from _support.gateway_server import GatewayServer, gateway_fixture
from _support.native import feed_changes, until_feed_past
from bastion.oauth.authorization_codes import AuthorizationCodeService
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.settings import Settings
from bastion.storage import Client, Database, User

ROUTES = """
  - {name: orders, match: {path: /api/orders}, upstream: "{echo}", auth: [jwt]}
"""
served = gateway_fixture(ROUTES)

CALLBACK = "http://127.0.0.1:9999/cb"
VERIFIER = "Zr9XqL2-w0n7Yb_0a8Kf3dT1uVh6sJm4pQe5iRg.oCy~"
SCOPE = "openid orders:read"
RP = Client(
    "rp-algs",
    name="relying party",
    client_type="public",
    token_endpoint_auth_method="none",
    grant_types=("authorization_code",),
    redirect_uris=(CALLBACK,),
    scopes=tuple(SCOPE.split()),
)


@pytest.fixture(scope="module")
def echo_upstream() -> Any:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def user_id(served: GatewayServer) -> str:
    """The client ``rp-algs`` and its user, stored where the server reads them."""

    async def seed() -> str:
        db = await Database.connect(f"sqlite:///{served.config.parent / 'bastion.db'}")
        try:
            await db.clients.create(RP)
            return (await db.users.create(User(username="carol"))).id
        finally:
            await db.close()

    return asyncio.run(seed())


def _code(served: GatewayServer, user_id: str) -> str:
    async def issue() -> str:
        db = await Database.connect(f"sqlite:///{served.config.parent / 'bastion.db'}")
        try:
            tokens = Settings().tokens
            codes = AuthorizationCodeService(
                db.codes, RefreshTokenService(db.refresh_tokens, tokens), tokens
            )
            return await codes.issue(
                await db.clients.get(RP.client_id),
                user_id,
                redirect_uri=CALLBACK,
                scope=SCOPE,
                code_challenge=create_s256_code_challenge(VERIFIER),
                nonce="n-1",
                auth_time=time.time() - 5,
            )
        finally:
            await db.close()

    return asyncio.run(issue())


def _tokens(served: GatewayServer, user_id: str) -> dict[str, Any]:
    form = {
        "grant_type": "authorization_code",
        "code": _code(served, user_id),
        "redirect_uri": CALLBACK,
        "code_verifier": VERIFIER,
        "client_id": RP.client_id,
    }
    with served.client() as http:
        response = http.post("/oauth2/token", data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _register(served: GatewayServer, alg: str) -> dict[str, Any]:
    """``bastion clients update rp-algs --id-token-alg ALG``; waits until the server saw it."""
    before = feed_changes(served.url)
    doc: dict[str, Any] = served.cli("clients", "update", RP.client_id, "--id-token-alg", alg)
    until_feed_past(served.url, before)
    return doc


def _jwks(served: GatewayServer) -> dict[str, Any]:
    with served.client() as http:
        document: dict[str, Any] = http.get("/oauth2/jwks.json").json()
    return document


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def _header(token: str) -> dict[str, Any]:
    head = token.split(".")[0]
    header: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return header


def test_the_jwks_publishes_one_active_key_per_algorithm(served: GatewayServer) -> None:
    keys = _jwks(served)["keys"]
    assert sorted((jwk["alg"], jwk["kty"]) for jwk in keys) == [("ES256", "EC"), ("RS256", "RSA")]
    for jwk in keys:
        assert jwk["use"] == "sig" and jwk["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk)
    [rsa] = [jwk for jwk in keys if jwk["alg"] == "RS256"]
    modulus = base64.urlsafe_b64decode(rsa["n"] + "=" * (-len(rsa["n"]) % 4))
    assert len(modulus) * 8 == 3072  # signing_keys.rsa_key_size's default
    listed = served.cli("signing-keys", "list", "--algorithm", "RS256")["keys"]
    assert [(key["kid"], key["state"]) for key in listed] == [(rsa["kid"], "active")]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_the_id_token_is_signed_with_the_registered_algorithm(
    served: GatewayServer, user_id: str, alg: str
) -> None:
    doc = _register(served, alg)
    assert doc["id_token_signed_response_alg"] == alg
    tokens = _tokens(served, user_id)
    id_token = tokens["id_token"]
    jwks = _jwks(served)
    [key] = [jwk for jwk in jwks["keys"] if jwk["alg"] == alg]
    assert _header(id_token) == {"alg": alg, "kid": key["kid"], "typ": "JWT"}
    # The relying party verifies with the one algorithm it registered, against the JWKS.
    verified = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=[alg])
    claims = verified.claims
    assert (claims["sub"], claims["aud"], claims["nonce"]) == (user_id, RP.client_id, "n-1")
    assert claims["at_hash"] == _at_hash(tokens["access_token"])
    other = "ES256" if alg == "RS256" else "RS256"
    with pytest.raises(JoseError):
        jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=[other])
    # The access token keeps signing_keys.algorithm (ES256), whatever the ID token's.
    assert _header(tokens["access_token"])["alg"] == "ES256"
    with served.client() as http:
        orders = http.get(
            "/api/orders", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    assert orders.status_code == 200


@pytest.mark.parametrize("alg", ["PS256", "HS256", "none", "rs256"])
def test_an_algorithm_not_offered_is_refused(served: GatewayServer, alg: str) -> None:
    result = run_cli(
        "clients",
        "update",
        RP.client_id,
        "--id-token-alg",
        alg,
        "-c",
        str(served.config),
        "--json",
        cwd=served.config.parent,
    )
    assert result.returncode == 1, result.stdout
    assert json.loads(result.stdout) == {
        "error": "invalid_client_metadata",
        "detail": f"--id-token-alg: {alg!r} is not offered; use one of ES256, RS256 "
        "(signing_keys.id_token_algorithms)",
    }
