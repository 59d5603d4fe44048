"""The mutate step: client identity headers stripped, bastion's added, through a real upstream."""

from __future__ import annotations

import pytest

from bastion.demo.echo import EchoServer
from bastion.gateway import Exchange, Gateway, Identity, IdentityHeaders, Step
from bastion.gateway.mutate import DEFAULT_STRIPPED_HEADERS
from gateway.gateway_support import call, route

SPOOFED = [
    ("X-Bastion-Subject", "admin"),
    ("X_Bastion_Subject", "admin"),
    ("x-bastion-client", "evil"),
    ("X-BASTION-SCOPES", "admin:all"),
    ("x-bastion-key-id", "k1"),
    ("x-bastion-request-id", "forged"),
    ("X-Bastion-Anything", "x"),
    ("x-user-id", "root"),
    ("X_User_Id", "root"),
    ("X-Forwarded-User", "root"),
    ("x-auth-request-user", "root"),
    ("X-Remote-User", "root"),
    ("Remote_User", "root"),
    ("x-client-id", "evil"),
    ("X-Scopes", "admin"),
    ("x-user", "root"),
]

ALICE = Identity(
    method="jwt",
    subject="user:alice",
    scopes=frozenset({"b", "a"}),
    claims={"client_id": "web-app"},
)


def gateway_with(echo: EchoServer, identity: Identity) -> Gateway:
    async def vouches(ex: Exchange) -> Identity | None:
        return identity

    routes = [
        route("priv", "/priv", echo.url, public=False, auth=["jwt"]),
        route("pub", "/pub", echo.url, public=True),
    ]
    return Gateway(routes, authenticators={"jwt": vouches})


def forwarded_bastion_headers(echo: EchoServer) -> dict[str, str]:
    seen = echo.received[-1]
    return {n: v for n, v in seen.headers if n.replace("_", "-").startswith("x-bastion-")}


async def test_spoofed_headers_never_reach_the_upstream(echo: EchoServer) -> None:
    gateway = gateway_with(echo, ALICE)
    headers = [*SPOOFED, ("x-keep", "yes")]
    assert (await call(gateway, "GET", "/priv/x", headers=headers)).status == 200
    seen = echo.received[-1]
    assert forwarded_bastion_headers(echo) == {
        "x-bastion-subject": "user:alice",
        "x-bastion-client": "web-app",
        "x-bastion-scopes": "a b",
    }
    names = {n.replace("_", "-") for n, _ in seen.headers}
    assert names.isdisjoint(DEFAULT_STRIPPED_HEADERS)
    assert seen.header("x-keep") == "yes"
    await gateway.shutdown()


async def test_public_route_strips_too(echo: EchoServer) -> None:
    gateway = gateway_with(echo, ALICE)
    assert (await call(gateway, "GET", "/pub/x", headers=SPOOFED)).status == 200
    assert forwarded_bastion_headers(echo) == {}  # anonymous: nothing to add
    names = {n.replace("_", "-") for n, _ in echo.received[-1].headers}
    assert names.isdisjoint(DEFAULT_STRIPPED_HEADERS)
    await gateway.shutdown()


async def test_connection_tricks(echo: EchoServer) -> None:
    gateway = gateway_with(echo, ALICE)
    headers = [
        # Naming bastion's own header in Connection must not make the proxy drop it.
        ("connection", "x-bastion-subject, X_Custom, content-length, keep-alive"),
        ("x-custom", "hop"),
        ("x-other", "kept"),
        ("content-type", "text/plain"),
    ]
    result = await call(gateway, "POST", "/priv/x", headers=headers, body=b"hello")
    assert result.status == 200
    seen = echo.received[-1]
    assert seen.header("x-bastion-subject") == "user:alice"
    assert seen.header("x-custom") is None
    assert seen.header("x-other") == "kept"
    assert seen.body == b"hello"  # Content-Length named in Connection: framing untouched
    await gateway.shutdown()


def test_key_id_and_request_id_headers() -> None:
    rewriter = IdentityHeaders()
    key = Identity(method="api_key", subject="apikey:k1", key_id="k1")
    assert rewriter.rewrite([(b"accept", b"*/*")], key, "rid-7") == [
        (b"accept", b"*/*"),
        (b"x-bastion-subject", b"apikey:k1"),
        (b"x-bastion-key-id", b"k1"),
        (b"x-bastion-request-id", b"rid-7"),
    ]
    assert rewriter.rewrite([], None) == []


def test_rewrite_works_on_a_copy() -> None:
    original = [(b"x-bastion-subject", b"admin"), (b"accept", b"*/*")]
    snapshot = list(original)
    out = IdentityHeaders().rewrite(original, ALICE, None)
    assert original == snapshot
    assert out is not original
    assert (b"x-bastion-subject", b"user:alice") in out
    assert (b"x-bastion-subject", b"admin") not in out


def test_values_cannot_split_the_request_head() -> None:
    odd = Identity(method="jwt", subject="a\r\nX-Evil: 1", claims={"client_id": "café 100%"})
    out = IdentityHeaders().rewrite([], odd, None)
    assert out == [
        (b"x-bastion-subject", b"a%0D%0AX-Evil: 1"),
        (b"x-bastion-client", b"caf%C3%A9 100%25"),
    ]


def test_custom_strip_list() -> None:
    rewriter = IdentityHeaders(["X-Tenant"])
    out = rewriter.rewrite(
        [(b"x_tenant", b"t1"), (b"x-user-id", b"u"), (b"x-bastion-x", b"1")], None
    )
    assert out == [(b"x-user-id", b"u")]
    with pytest.raises(ValueError, match="identity header to strip 'bad name'"):
        IdentityHeaders(["bad name"])
    with pytest.raises(ValueError, match="is not a valid header name"):
        IdentityHeaders([""])


def test_mutate_must_fail_closed() -> None:
    async def run(ex: Exchange) -> None:
        return None

    with pytest.raises(ValueError, match="gateway step 'mutate' must fail closed"):
        Step("mutate", run, fail="open")
