"""End to end: an authorization code redeemed by Authlib's client against ``bastion serve``.

The code is seeded through the service on the server's database (the authorization
endpoint's own flow is tested in ``tests/features/oidc/``); Authlib's client — code nobody here
wrote — redeems it over HTTPS as a public client with its PKCE verifier. The ID token is
verified with joserfc against the JWKS bastion publishes. Replaying the code is
``400 invalid_grant`` and revokes what it issued: the refresh token, and the access token
at a gateway ``jwt`` route within a second.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from _support import EchoThread
from _support.gateway_server import GatewayServer, audit_rows, gateway_fixture
from bastion.oauth.authorization_codes import AuthorizationCodeService
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.settings import Settings
from bastion.storage import Client, Database, User

ROUTES = """
  - {name: orders, match: {path: /api/orders}, upstream: "{echo}", auth: [jwt]}
"""
served = gateway_fixture(ROUTES, scope="function")

CALLBACK = "http://127.0.0.1:9999/cb"
VERIFIER = "Zr9XqL2-w0n7Yb_0a8Kf3dT1uVh6sJm4pQe5iRg.oCy~"
SCOPE = "openid offline_access orders:read"


#: A public client (``none``: its client_id is its authentication).
SPA = Client(
    "spa",
    client_type="public",
    token_endpoint_auth_method="none",
    grant_types=("authorization_code", "refresh_token"),
    redirect_uris=(CALLBACK,),
    scopes=tuple(SCOPE.split()),
)


@pytest.fixture
def echo_upstream(echo: EchoThread) -> EchoThread:
    """The upstream ``served`` proxies to: the suite's echo server."""
    return echo


def _seed_code(server: GatewayServer) -> tuple[str, str]:
    """The public client ``spa``, a user, and a code for them; ``(code, user id)``."""

    async def seed() -> tuple[str, str]:
        db = await Database.connect(f"sqlite:///{server.config.parent / 'bastion.db'}")
        try:
            client = await db.clients.create(SPA)
            user = await db.users.create(User(username="alice"))
            tokens = Settings().tokens
            codes = AuthorizationCodeService(
                db.codes, RefreshTokenService(db.refresh_tokens, tokens), tokens
            )
            code = await codes.issue(
                client,
                user.id,
                redirect_uri=CALLBACK,
                scope=SCOPE,
                code_challenge=create_s256_code_challenge(VERIFIER),
                nonce="nonce-42",
                auth_time=time.time() - 5,
                amr=("pwd",),
                session_id="sid-1",
            )
            return code, user.id
        finally:
            await db.close()

    return asyncio.run(seed())


def _orders(http: httpx.Client, access_token: str) -> int:
    return http.get("/api/orders", headers={"Authorization": f"Bearer {access_token}"}).status_code


def _at_hash(access_token: str) -> str:
    # OIDC Core §3.1.3.6, by hand: the left half of SHA-256 (ES256), base64url.
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def _verified_id_token(http: httpx.Client, id_token: str) -> dict[str, Any]:
    """The ID token's claims, verified with joserfc against the published JWKS."""
    metadata = http.get("/.well-known/oauth-authorization-server").json()
    jwks = http.get("/oauth2/jwks.json").json()
    token = jwt.decode(id_token, KeySet.import_key_set(jwks), algorithms=["ES256"])
    assert token.header["typ"] == "JWT"
    assert "authorization_code" in metadata["grant_types_supported"]
    claims: dict[str, Any] = token.claims
    assert claims["iss"] == metadata["issuer"]
    return claims


def test_a_code_redeemed_by_authlib_and_replayed(served: GatewayServer) -> None:
    code, user_id = _seed_code(served)
    token_url = served.url + "/oauth2/token"
    with (
        OAuth2Client(
            client_id="spa",
            token_endpoint_auth_method="none",
            redirect_uri=CALLBACK,
            verify=False,
        ) as rp,
        served.client() as http,
    ):
        token = rp.fetch_token(
            token_url, grant_type="authorization_code", code=code, code_verifier=VERIFIER
        )
        assert (token["token_type"], token["scope"]) == ("Bearer", SCOPE)
        assert token["refresh_token"].startswith("brt_")
        claims = _verified_id_token(http, token["id_token"])
        assert (claims["sub"], claims["aud"], claims["nonce"]) == (user_id, "spa", "nonce-42")
        assert claims["at_hash"] == _at_hash(token["access_token"])
        assert (claims["sid"], claims["amr"]) == ("sid-1", ["pwd"])
        assert claims["exp"] - claims["iat"] == 300  # tokens.id_token_ttl
        assert _orders(http, token["access_token"]) == 200

        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CALLBACK,
            "code_verifier": VERIFIER,
            "client_id": "spa",
        }
        replay = http.post("/oauth2/token", data=form)
        assert replay.status_code == 400
        assert replay.json() == {
            "error": "invalid_grant",
            "error_description": "the authorization code is invalid",
        }
        deadline = time.monotonic() + 1.0
        while _orders(http, token["access_token"]) != 401:
            assert time.monotonic() < deadline, "the code's access token still works after 1 s"
            time.sleep(0.05)
        refresh = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        refused = http.post("/oauth2/token", data={**refresh, "client_id": "spa"})
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    reuse = _audited(served, "token.code_reuse")
    assert [(r.outcome, r.reason, r.client_id, r.subject) for r in reuse] == [
        ("failure", "code_reuse", "spa", user_id)
    ]


def _audited(server: GatewayServer, event_type: str) -> list[Any]:
    """The audit rows of ``event_type``, once one is written (the writer batches)."""
    deadline = time.monotonic() + 10
    while True:
        rows = list(audit_rows(server.config.parent, event_type).values())
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)
