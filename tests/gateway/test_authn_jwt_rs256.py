"""The native gateway's ``jwt`` method with bastion's RS256 key beside its ES256 one.

bastion keeps one active key per algorithm; the native core receives every published key
(``gateway/native_push.py``) and verifies a token with the key its ``kid`` names, the
algorithm pinned to that key (RFC 8725 §3.1). Over real HTTP: a token signed with the RS256
key passes; the same claims under any algorithm the named key does not hold — HS256 keyed
with the RSA public key, ``none``, ES256 on the RS256 kid, an RS256 signature on the ES256
kid — are each the one collapsed 401 ``invalid_token`` with its ``gateway.denied`` row,
and nothing reaches the upstream.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from _support import EchoThread
from _support.gateway_authn import own_client, own_signing_key, refused, upstream_saw
from _support.gateway_server import GatewayServer, fresh_echo, gateway_fixture, plane
from bastion.crypto import SigningKeyPair, sign_jwt

ISSUER = "https://auth.test"


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


served = gateway_fixture(
    '  - {name: api, match: {path: /api}, upstream: "{echo}", auth: [jwt]}\n',
    f"tls: off\ntrusted_proxies: [192.0.2.1]\nissuer: {ISSUER}\n",
)


@pytest.fixture(scope="module")
def keys(served: GatewayServer) -> dict[str, SigningKeyPair]:
    return {alg: own_signing_key(served, alg) for alg in ("ES256", "RS256")}


@pytest.fixture(scope="module")
def client_id(served: GatewayServer) -> str:
    return str(own_client(served)["client_id"])


@pytest.fixture
def gateway(served: GatewayServer, echo_upstream: EchoThread) -> Iterator[httpx.Client]:
    fresh_echo(echo_upstream)
    with served.client() as client:
        yield client


def claims(client_id: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": "user:alice",
        "aud": ISSUER,
        "client_id": client_id,
        "scope": "orders:read",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_an_rs256_self_token_passes_at_the_native_gateway(
    gateway: httpx.Client,
    served: GatewayServer,
    keys: dict[str, SigningKeyPair],
    client_id: str,
) -> None:
    rs = keys["RS256"]
    token = sign_jwt(claims(client_id), rs, typ="at+jwt")
    response = gateway.get("/api", headers=bearer(token))
    assert upstream_saw(response)["x-bastion-subject"] == "user:alice"
    # Answered by the native plane, not by Python's.
    python, native = served.planes("/api")
    assert plane(response) == native != python
    es_token = sign_jwt(claims(client_id), keys["ES256"], typ="at+jwt")
    assert gateway.get("/api", headers=bearer(es_token)).status_code == 200


def test_tokens_under_an_algorithm_the_key_does_not_hold_are_refused(
    gateway: httpx.Client,
    served: GatewayServer,
    echo_upstream: EchoThread,
    keys: dict[str, SigningKeyPair],
    client_id: str,
) -> None:
    rs, es = keys["RS256"], keys["ES256"]
    payload = claims(client_id)
    pem = rs.public_key.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs = _unsigned({"alg": "HS256", "kid": rs.kid, "typ": "at+jwt"}, payload)
    es_on_rs = _unsigned({"alg": "ES256", "kid": rs.kid, "typ": "at+jwt"}, payload)
    rs_on_es = _unsigned({"alg": "RS256", "kid": es.kid, "typ": "at+jwt"}, payload)
    stranger = SigningKeyPair.generate("ES256")
    forgeries = {
        "HS256 keyed with the RSA public key": hs
        + "."
        + _b64(hmac.new(pem, hs.encode(), hashlib.sha256).digest()),
        "none": _unsigned({"alg": "none", "kid": rs.kid, "typ": "at+jwt"}, payload) + ".",
        "ES256 header on the RS256 kid": es_on_rs + "." + _b64(stranger.sign(es_on_rs.encode())),
        "RS256 signature on the ES256 kid": rs_on_es + "." + _b64(rs.sign(rs_on_es.encode())),
    }
    for name, token in forgeries.items():
        response = gateway.get("/api", headers=bearer(token))
        refused(served, response, 401, "invalid_token", "api")
        assert response.headers["www-authenticate"] == (
            'Bearer realm="bastion", error="invalid_token"'
        ), name
    assert len(echo_upstream.server.received) == 0
