"""The mtls method and RFC 8705 certificate-bound tokens, over real TLS with client certificates.

One ``bastion serve`` (TLS with ``client_ca``: it asks for client certificates and verifies
them) with routes ``certs`` (``auth: [mtls]``) and ``tokens`` (``auth: [jwt, mtls]``);
clients present certificates of the test CA (``alice``: a URI SAN; ``bob``: none); tokens
are bastion's own, signed with the server's active key for a client of it, bound to a
certificate by ``cnf``. The echo upstream answers with what it received. In process: the
control plane's identification of a certificate and what it pushes to the native cache.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import EchoThread
from _support.gateway_authn import own_client, own_signing_key, refused, serve_configured
from _support.gateway_server import GatewayServer, fresh_echo
from bastion import _native
from bastion.crypto import SigningKeyPair, sign_jwt, x5t_s256
from bastion.gateway import native_push
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authn.mtls import MtlsAuthenticator
from gateway.certs_support import TestCA, client_sans, der, server_sans, write_pair

ISSUER = "https://auth.test"
CA = TestCA()
ALICE, ALICE_KEY = CA.issue("alice", client_sans("spiffe://test/alice"), server=False)
BOB, BOB_KEY = CA.issue("bob", [], server=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    out = {"ca": CA.write_ca(directory / "ca.pem")}
    pairs = {
        "server": CA.issue("localhost", server_sans(), server=True),
        "alice": (ALICE, ALICE_KEY),
        "bob": (BOB, BOB_KEY),
    }
    for name, (cert, key) in pairs.items():
        out[f"{name}_cert"], out[f"{name}_key"] = write_pair(cert, key, directory, name)
    return out


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    pki: dict[str, Path], echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    up = echo_upstream.server.url
    routes = "".join(
        f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {up}\n    auth: {auth}\n"
        for name, auth in (("certs", "[mtls]"), ("tokens", "[jwt, mtls]"))
    )
    settings = (
        f"issuer: {ISSUER}\n"
        f"tls: {{mode: files, cert: '{pki['server_cert']}', key: '{pki['server_key']}', "
        f"client_ca: '{pki['ca']}'}}\n"
    )
    with serve_configured(tmp_path_factory.mktemp("mtls"), routes, settings) as server:
        yield server


@pytest.fixture(scope="module")
def signer(served: GatewayServer) -> tuple[SigningKeyPair, str]:
    """The server's signing key and one of its clients."""
    return own_signing_key(served), own_client(served)["client_id"]


@pytest.fixture
def fresh(echo_upstream: EchoThread) -> EchoThread:
    fresh_echo(echo_upstream)
    return echo_upstream


def request(
    served: GatewayServer,
    pki: dict[str, Path],
    path: str,
    cert: str | None = None,
    token: str | None = None,
) -> httpx.Response:
    """GET ``path`` over TLS presenting the client certificate ``cert`` (a name of ``pki``)."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert is not None:
        context.load_cert_chain(str(pki[f"{cert}_cert"]), str(pki[f"{cert}_key"]))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=f"https://127.0.0.1:{served.port}", verify=context) as client:
        return client.get(path, headers=headers, timeout=10)


def token(signer: tuple[SigningKeyPair, str], **extra: Any) -> str:
    key, client_id = signer
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "svc",
        "aud": ISSUER,
        "client_id": client_id,
        "scope": "",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    return sign_jwt(claims, key, typ="at+jwt")


def subject(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["headers"]["x-bastion-subject"])


def test_certificate_identity(
    served: GatewayServer, pki: dict[str, Path], fresh: EchoThread
) -> None:
    assert subject(request(served, pki, "/certs/x", "alice")) == "spiffe://test/alice"  # URI SAN
    assert subject(request(served, pki, "/certs/x", "bob")) == "CN=bob"  # no SAN: RFC 4514
    assert len(fresh.server.received) == 2


def test_no_certificate_is_401(served: GatewayServer, pki: dict[str, Path]) -> None:
    response = request(served, pki, "/certs/x")
    refused(served, response, 401, "unauthenticated", "certs")


def test_bound_token_needs_its_certificate(
    served: GatewayServer, pki: dict[str, Path], signer: tuple[SigningKeyPair, str]
) -> None:
    bound = token(signer, cnf={"x5t#S256": x5t_s256(der(ALICE))})
    assert subject(request(served, pki, "/tokens/x", "alice", bound)) == "svc"
    for cert in (None, "bob"):  # also from the verified-token cache: checked every request
        response = request(served, pki, "/tokens/x", cert, bound)
        refused(served, response, 401, "invalid_token", "tokens")
    unbound = token(signer)
    assert subject(request(served, pki, "/tokens/x", None, unbound)) == "svc"
    malformed = request(served, pki, "/tokens/x", "alice", token(signer, cnf="x"))
    refused(served, malformed, 401, "invalid_token", "tokens")


@pytest.mark.parametrize(
    "cnf",
    [
        {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},  # DPoP (RFC 9449 §6)
        {"jwk": {"kty": "EC"}},
        {"kid": "k1"},
        {"x5t#S256": "whatever", "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
    ],
)
@pytest.mark.parametrize("cert", [None, "alice"])
def test_token_bound_otherwise_is_not_a_bearer_token(
    served: GatewayServer,
    pki: dict[str, Path],
    signer: tuple[SigningKeyPair, str],
    fresh: EchoThread,
    cnf: dict[str, Any],
    cert: str | None,
) -> None:
    # No DPoP proof is verified at the gateway: a sender-constrained token presented as
    # a plain bearer token is refused, with or without a client certificate.
    if "x5t#S256" in cnf:
        cnf = {**cnf, "x5t#S256": x5t_s256(der(ALICE))}
    bound = token(signer, cnf=cnf)
    for _ in range(2):  # verified, then (were it cached) from the verified-token cache
        response = request(served, pki, "/tokens/x", cert, bound)
        refused(served, response, 401, "invalid_token", "tokens")
    assert not fresh.server.received


def test_every_identity_is_pushed_to_the_native_cache() -> None:
    # The control plane's identification of a verified certificate (what a native lookup
    # of a certificate runs: ``bastion.gateway.lookups``).
    pushed: list[Identity] = []
    mtls = MtlsAuthenticator(push=pushed.append)
    for cert in (ALICE, ALICE, BOB):
        mtls.identify(der(cert))
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
