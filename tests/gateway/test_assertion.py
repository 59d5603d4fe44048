"""The signed identity assertion and configurable identity header names (the mutate step).

Black-box, against a real ``bastion serve`` with ``identity_headers`` renaming the subject
and request-id headers and the assertion on (``X-Assert``, 30 s): the recording echo
upstream shows what arrives, and the assertion is verified against the server's own
``/oauth2/jwks.json`` and issuer. The identity is a real access token of a trusted local IdP.
The checks :class:`AssertionSigner` and :class:`IdentityHeaders` make of their settings
(the runtime and the route table build them) keep their unit tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_edge import bearer, idp_token, served_with
from _support.gateway_server import GatewayServer, fresh_echo, request_bytes
from bastion.crypto import InvalidTokenError, JWTVerifier, PublicKeySet, SigningKeyPair
from bastion.demo.echo import EchoServer
from bastion.gateway.assertion import ASSERTION_TYP, AssertionSigner
from bastion.gateway.mutate import IdentityHeaders
from gateway.idp_support import FakeIdP, IdPThread

ROUTES = """\
  - name: a
    match: {path: /a}
    upstream: {echo}
    auth: [jwt]
    jwt: {issuers: [{idp}]}
  - name: b
    match: {path: /b}
    upstream: {echo}
    auth: [jwt]
    jwt: {issuers: [{idp}]}
    assertion_audience: urn:svc:b
  - name: open
    match: {path: /open}
    upstream: {echo}
    public: true
"""
SETTINGS = (
    "identity_headers:\n"
    "  subject: X-User\n"
    "  request_id: X-Req\n"
    "  assertion: {enabled: true, ttl: 30s, header: X-Assert}\n"
)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    thread = IdPThread()
    try:
        yield thread.idp
    finally:
        thread.close()


served = served_with(ROUTES, SETTINGS, idp=True)


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    return fresh_echo(echo_upstream)


def identity(idp: FakeIdP) -> list[tuple[str, str]]:
    """user:ünï of the client web, scopes a and b."""
    return list(bearer(idp_token(idp, "user:ünï", "web", "b a")).items())


def verifier(served: GatewayServer, audience: str) -> JWTVerifier:
    with served.client() as client:
        issuer = client.get("/.well-known/oauth-authorization-server").json()["issuer"]
        jwks = client.get("/oauth2/jwks.json").json()
    return JWTVerifier(
        PublicKeySet.from_jwks(jwks),
        issuer=issuer,
        audience=audience,
        typ=ASSERTION_TYP,
        required_claims=("exp", "iat", "jti", "sub"),
        max_lifetime=60,
    )


def test_upstream_receives_a_verifiable_assertion(
    served: GatewayServer, echo: EchoServer, idp: FakeIdP
) -> None:
    spoofed = [
        ("X-Assert", "forged.token.here"),
        ("x_assert", "forged"),
        ("X-User", "admin"),
        ("X-Req", "spoof"),
        ("X-Bastion-Subject", "admin"),
    ]
    response = served.raw(request_bytes("GET", "/a/x", [*identity(idp), *spoofed]))
    assert response.status == 200
    (seen,) = echo.received
    token = seen.header("x-assert")
    assert token is not None and "," not in token  # exactly one: the client's was stripped
    check = verifier(served, echo.url)
    claims = check.verify(token).claims
    assert claims["sub"] == "user:ünï"
    assert claims["client_id"] == "web"
    assert claims["scope"] == "a b"
    assert claims["route"] == "a"
    assert claims["request_id"] == response.request_id
    assert claims["auth_method"] == "jwt"
    assert claims["aud"] == echo.url
    with served.client() as client:
        assert (
            claims["iss"] == client.get("/.well-known/oauth-authorization-server").json()["issuer"]
        )
    assert claims["exp"] - claims["iat"] == 30
    assert len(claims["jti"]) == 32
    # Renamed headers carry bastion's values; the defaults are not sent.
    assert seen.header("x-user") == "user:%C3%BCn%C3%AF"
    assert seen.header("x-req") == response.request_id
    assert seen.header("x-bastion-subject") is None
    assert seen.header("x-bastion-client") == "web"


def test_assertion_audience_is_per_route(
    served: GatewayServer, echo: EchoServer, idp: FakeIdP
) -> None:
    assert served.raw(request_bytes("GET", "/b/x", identity(idp))).status == 200
    token = echo.received[0].header("x-assert")
    assert token is not None
    assert verifier(served, "urn:svc:b").verify(token).claims["aud"] == "urn:svc:b"
    with pytest.raises(InvalidTokenError) as caught:
        verifier(served, echo.url).verify(token)
    assert caught.value.reason == "wrong_audience"


def test_public_routes_get_no_assertion_and_spoofs_are_stripped(
    served: GatewayServer, echo: EchoServer
) -> None:
    headers = [("X-Assert", "forged"), ("X-User", "admin")]
    assert served.raw(request_bytes("GET", "/open", headers)).status == 200
    (seen,) = echo.received
    assert seen.header("x-assert") is None
    assert seen.header("x-user") is None


def test_ttl_is_bounded() -> None:
    key = SigningKeyPair.generate("ES256")
    with pytest.raises(ValueError, match="1 to 60 seconds"):
        AssertionSigner(lambda: key, issuer="https://auth.test", ttl=61)


def test_header_names_are_checked() -> None:
    with pytest.raises(ValueError, match="identity header 'bad name' is not a valid header name"):
        IdentityHeaders(names={"subject": "bad name"})
    with pytest.raises(ValueError, match="unknown identity header 'user'"):
        IdentityHeaders(names={"user": "X-User"})
