"""The mtls method and RFC 8705 certificate-bound tokens, with the cert in the ASGI TLS scope."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bastion import _native
from bastion.crypto import PublicKeySet, SigningKeyPair, sign_jwt, x5t_s256
from bastion.demo.echo import EchoServer
from bastion.gateway import Gateway, InvalidBearerTokenError, UnauthenticatedError, native_push
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authn.jwt import JwtAuthenticator
from bastion.gateway.authn.mtls import MtlsAuthenticator
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.storage.shared import MemorySharedState
from gateway.certs_support import TestCA, client_sans, der, pem
from gateway.gateway_support import Match, Recorder, Route, make_receive, make_scope

ISSUER = "https://auth.test"
CA = TestCA()
ALICE, _ = CA.issue("alice", client_sans("spiffe://test/alice"), server=False)
BOB, _ = CA.issue("bob", [], server=False)


@dataclass
class Setup:
    key: SigningKeyPair
    gateway: Gateway


@pytest.fixture
async def setup(echo: EchoServer) -> AsyncIterator[Setup]:
    key = SigningKeyPair.generate("ES256")
    keys = PublicKeySet([key.public_key])
    shared = MemorySharedState()
    verifier = AccessTokenVerifier(lambda: keys, issuer=ISSUER, shared=shared)
    authn = JwtAuthenticator(verifier, shared=shared, issuer=ISSUER)
    routes = [
        Route("certs", Match("/certs"), echo.url, public=False, auth=("mtls",)),
        Route("tokens", Match("/tokens"), echo.url, public=False, auth=("jwt", "mtls")),
    ]
    gateway = Gateway(routes, authenticators={"jwt": authn, "mtls": MtlsAuthenticator()})
    try:
        yield Setup(key, gateway)
    finally:
        await gateway.shutdown()
        await shared.close()


async def request(setup: Setup, path: str, cert: Any = None, token: str | None = None) -> int:
    headers = [("authorization", f"Bearer {token}")] if token else []
    scope = make_scope("GET", path, headers=headers, scheme="https")
    if cert is not None:
        scope["extensions"] = {"tls": {"client_cert_chain": [pem(cert)]}}
    recorder = Recorder()
    await setup.gateway(scope, make_receive(), recorder)
    return recorder.result().status


def token(setup: Setup, **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "svc",
        "aud": "api",
        "client_id": "svc",
        "scope": "",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return sign_jwt(claims, setup.key, typ="at+jwt")


async def test_certificate_identity(setup: Setup, echo: EchoServer) -> None:
    assert await request(setup, "/certs/x", ALICE) == 200
    assert await request(setup, "/certs/x", BOB) == 200
    alice, bob = echo.received
    assert alice.header("x-bastion-subject") == "spiffe://test/alice"  # the URI SAN
    assert bob.header("x-bastion-subject") == "CN=bob"  # no SAN: the RFC 4514 subject


async def test_no_certificate_is_401(setup: Setup) -> None:
    with pytest.raises(UnauthenticatedError) as caught:
        await request(setup, "/certs/x")
    assert (caught.value.status, caught.value.code) == (401, "unauthenticated")


async def test_bound_token_needs_its_certificate(setup: Setup, echo: EchoServer) -> None:
    bound = token(setup, cnf={"x5t#S256": x5t_s256(der(ALICE))})
    assert await request(setup, "/tokens/x", ALICE, bound) == 200
    assert echo.received[0].header("x-bastion-subject") == "svc"
    for cert in (None, BOB):  # also from the verified-token cache: checked every request
        with pytest.raises(InvalidBearerTokenError) as caught:
            await request(setup, "/tokens/x", cert, bound)
        assert caught.value.reason == "cnf_mismatch"
        assert caught.value.status == 401
    unbound = token(setup)
    assert await request(setup, "/tokens/x", None, unbound) == 200
    with pytest.raises(InvalidBearerTokenError) as bad:
        await request(setup, "/tokens/x", ALICE, token(setup, cnf="x"))
    assert bad.value.reason == "malformed"


@pytest.mark.parametrize(
    "cnf",
    [
        {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},  # DPoP (RFC 9449 §6)
        {"jwk": {"kty": "EC"}},
        {"kid": "k1"},
        {"x5t#S256": "whatever", "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
    ],
)
@pytest.mark.parametrize("cert", [None, ALICE])
async def test_token_bound_otherwise_is_not_a_bearer_token(
    setup: Setup, echo: EchoServer, cnf: dict[str, Any], cert: Any
) -> None:
    # No DPoP proof is verified at the gateway: a sender-constrained token presented as
    # a plain bearer token is refused, with or without a client certificate.
    if "x5t#S256" in cnf:
        cnf = {**cnf, "x5t#S256": x5t_s256(der(ALICE))}
    bound = token(setup, cnf=cnf)
    for _ in range(2):  # verified, then from the verified-token cache
        with pytest.raises(InvalidBearerTokenError) as caught:
            await request(setup, "/tokens/x", cert, bound)
        assert caught.value.reason == "cnf_unsupported"
        assert caught.value.status == 401
    assert not echo.received


async def test_every_identity_is_pushed_to_the_native_cache(echo: EchoServer) -> None:
    pushed: list[Identity] = []
    routes = [Route("certs", Match("/certs"), echo.url, public=False, auth=("mtls",))]
    gateway = Gateway(routes, authenticators={"mtls": MtlsAuthenticator(push=pushed.append)})
    try:
        for cert in (ALICE, ALICE, BOB):
            scope = make_scope("GET", "/certs/x", scheme="https")
            scope["extensions"] = {"tls": {"client_cert_chain": [pem(cert)]}}
            recorder = Recorder()
            await gateway(scope, make_receive(), recorder)
            assert recorder.result().status == 200
    finally:
        await gateway.shutdown()
    # Each time (Python's own cache hit too: the request came because the native one missed).
    assert [i.subject for i in pushed] == ["spiffe://test/alice"] * 2 + ["CN=bob"]
    alice = pushed[0]
    assert alice.method == "mtls"
    assert dict(alice.claims) == {
        "sub": "spiffe://test/alice",
        "cert_subject": "CN=alice",
        "cert_sans": ["spiffe://test/alice"],
        "cnf": {"x5t#S256": x5t_s256(der(ALICE))},
    }
    # What the runtime installs: the native core caches it by the certificate's thumbprint.
    thumbprint = x5t_s256(der(BOB))
    _native.cert_identities_clear()
    assert not _native.cert_identity_cached(thumbprint)
    native_push.cert_identity(pushed[2])
    assert _native.cert_identity_cached(thumbprint)
    assert not _native.cert_identity_cached(x5t_s256(der(ALICE)))
    # A record that does not agree with itself is refused; only mtls identities are pushed.
    forged = {"subject": "admin", "claims": {**alice.claims, "sub": "admin"}}
    with pytest.raises(ValueError, match=r"claims\.cnf is not this certificate"):
        _native.cert_identity_put(thumbprint, json.dumps(forged))
    native_push.cert_identity(Identity(method="jwt", subject="s", claims=alice.claims))
    assert not _native.cert_identity_cached(x5t_s256(der(ALICE)))
    _native.cert_identities_clear()
