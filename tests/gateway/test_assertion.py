"""The signed identity assertion and configurable identity header names (the mutate step)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bastion.crypto import InvalidTokenError, JWTVerifier, PublicKeySet, SigningKeyPair
from bastion.demo.echo import EchoServer
from bastion.gateway import Gateway, Identity
from bastion.gateway.assertion import ASSERTION_TYP, AssertionSigner
from bastion.gateway.mutate import IdentityHeaders
from gateway.gateway_support import Match, Recorder, Route, make_receive, make_scope

ISSUER = "https://auth.test"


@dataclass(frozen=True)
class AssertionRoute(Route):
    assertion_audience: str | None = None


class FixedIdentity:
    """An authenticator vouching for one identity whenever a request says 'Bearer ok'."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity

    async def __call__(self, ex: object) -> Identity | None:
        return self.identity


IDENTITY = Identity(
    method="jwt",
    subject="user:ünï",
    scopes=frozenset({"b", "a"}),
    claims={"client_id": "web"},
)


@pytest.fixture
def key() -> SigningKeyPair:
    return SigningKeyPair.generate("ES256")


@pytest.fixture
async def gateway(echo: EchoServer, key: SigningKeyPair) -> AsyncIterator[Gateway]:
    signer = AssertionSigner(lambda: key, issuer=ISSUER, ttl=30, header="X-Assert")
    headers = IdentityHeaders(names={"subject": "X-User", "request_id": "X-Req"}, assertion=signer)
    routes = [
        AssertionRoute("a", Match("/a"), echo.url, public=False, auth=("fixed",)),
        AssertionRoute(
            "b",
            Match("/b"),
            echo.url,
            public=False,
            auth=("fixed",),
            assertion_audience="urn:svc:b",
        ),
        AssertionRoute("open", Match("/open"), echo.url, public=True),
    ]
    gw = Gateway(
        routes, authenticators={"fixed": FixedIdentity(IDENTITY)}, identity_headers=headers
    )
    try:
        yield gw
    finally:
        await gw.shutdown()


async def send(gateway: Gateway, path: str, headers: list[tuple[str, str]]) -> int:
    scope = make_scope("GET", path, headers=headers)
    scope["bastion.request_id"] = "req-7"
    recorder = Recorder()
    await gateway(scope, make_receive(), recorder)
    return recorder.result().status


def verifier(key: SigningKeyPair, audience: str) -> JWTVerifier:
    return JWTVerifier(
        PublicKeySet([key.public_key]),
        issuer=ISSUER,
        audience=audience,
        typ=ASSERTION_TYP,
        required_claims=("exp", "iat", "jti", "sub"),
        max_lifetime=60,
    )


async def test_upstream_receives_a_verifiable_assertion(
    gateway: Gateway, echo: EchoServer, key: SigningKeyPair
) -> None:
    spoofed = [
        ("X-Assert", "forged.token.here"),
        ("x_assert", "forged"),
        ("X-User", "admin"),
        ("X-Req", "spoof"),
        ("X-Bastion-Subject", "admin"),
    ]
    assert await send(gateway, "/a/x", spoofed) == 200
    (seen,) = echo.received
    token = seen.header("x-assert")
    assert token is not None and "," not in token  # exactly one: the client's was stripped
    claims = verifier(key, echo.url).verify(token).claims
    assert claims["sub"] == "user:ünï"
    assert claims["client_id"] == "web"
    assert claims["scope"] == "a b"
    assert claims["route"] == "a"
    assert claims["request_id"] == "req-7"
    assert claims["auth_method"] == "jwt"
    assert claims["aud"] == echo.url
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 30
    assert len(claims["jti"]) == 32
    # Renamed headers carry bastion's values; the defaults are not sent.
    assert seen.header("x-user") == "user:%C3%BCn%C3%AF"
    assert seen.header("x-req") == "req-7"
    assert seen.header("x-bastion-subject") is None
    assert seen.header("x-bastion-client") == "web"


async def test_assertion_audience_is_per_route(
    gateway: Gateway, echo: EchoServer, key: SigningKeyPair
) -> None:
    await send(gateway, "/b/x", [])
    token = echo.received[0].header("x-assert")
    assert token is not None
    assert verifier(key, "urn:svc:b").verify(token).claims["aud"] == "urn:svc:b"
    with pytest.raises(InvalidTokenError) as caught:
        verifier(key, echo.url).verify(token)
    assert caught.value.reason == "wrong_audience"


async def test_public_routes_get_no_assertion_and_spoofs_are_stripped(
    gateway: Gateway, echo: EchoServer
) -> None:
    await send(gateway, "/open", [("X-Assert", "forged"), ("X-User", "admin")])
    (seen,) = echo.received
    assert seen.header("x-assert") is None
    assert seen.header("x-user") is None


def test_ttl_is_bounded(key: SigningKeyPair) -> None:
    with pytest.raises(ValueError, match="1 to 60 seconds"):
        AssertionSigner(lambda: key, issuer=ISSUER, ttl=61)


def test_header_names_are_checked() -> None:
    with pytest.raises(ValueError, match="identity header 'bad name' is not a valid header name"):
        IdentityHeaders(names={"subject": "bad name"})
    with pytest.raises(ValueError, match="unknown identity header 'user'"):
        IdentityHeaders(names={"user": "X-User"})
