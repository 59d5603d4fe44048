"""The mutate step: client identity headers stripped, bastion's added, through a real upstream.

Black-box, against a real ``bastion serve`` (``identity_headers.strip: [X-Tenant]``) in front
of the recording echo upstream: identities are real — an access token of a trusted issuer (a
local IdP: any subject, client and scopes) or an API key made with ``bastion keys create``.
Requests go over raw sockets, so header spellings an HTTP client would refuse or normalise
(``X_Bastion_Subject``) arrive as sent. :class:`IdentityHeaders`' checks of its header names
(the settings and the route table compile it) keep their unit tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_edge import api_key, idp_token, served_with
from _support.gateway_server import GatewayServer, fresh_echo, request_bytes
from bastion.demo.echo import EchoServer
from bastion.gateway.mutate import DEFAULT_STRIPPED_HEADERS, IdentityHeaders
from gateway.idp_support import FakeIdP, IdPThread

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

ROUTES = """\
  - name: priv
    match: {path: /priv}
    upstream: {echo}
    auth: [jwt, api_key]
    jwt: {issuers: [{idp}]}
  - name: pub
    match: {path: /pub}
    upstream: {echo}
    public: true
"""


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


served = served_with(ROUTES, "identity_headers: {strip: [X-Tenant]}\n", idp=True)


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    return fresh_echo(echo_upstream)


def alice(idp: FakeIdP) -> tuple[str, str]:
    """ALICE: user:alice of the client web-app, scopes a and b."""
    return ("Authorization", f"Bearer {idp_token(idp, 'user:alice', 'web-app', 'b a')}")


def forwarded_bastion_headers(echo: EchoServer) -> dict[str, str]:
    seen = echo.received[-1]
    return {n: v for n, v in seen.headers if n.replace("_", "-").startswith("x-bastion-")}


def test_spoofed_headers_never_reach_the_upstream(
    served: GatewayServer, echo: EchoServer, idp: FakeIdP
) -> None:
    headers = [alice(idp), *SPOOFED, ("x-keep", "yes")]
    response = served.raw(request_bytes("GET", "/priv/x", headers))
    assert response.status == 200
    seen = echo.received[-1]
    assert forwarded_bastion_headers(echo) == {
        "x-bastion-subject": "user:alice",
        "x-bastion-client": "web-app",
        "x-bastion-scopes": "a b",
        "x-bastion-request-id": response.request_id,
    }
    names = {n.replace("_", "-") for n, _ in seen.headers}
    assert names.isdisjoint(DEFAULT_STRIPPED_HEADERS)
    assert seen.header("x-keep") == "yes"


def test_public_route_strips_too(served: GatewayServer, echo: EchoServer) -> None:
    response = served.raw(request_bytes("GET", "/pub/x", SPOOFED))
    assert response.status == 200
    # Anonymous: nothing to add but the request id.
    assert forwarded_bastion_headers(echo) == {"x-bastion-request-id": response.request_id}
    names = {n.replace("_", "-") for n, _ in echo.received[-1].headers}
    assert names.isdisjoint(DEFAULT_STRIPPED_HEADERS)


def test_connection_tricks(served: GatewayServer, echo: EchoServer, idp: FakeIdP) -> None:
    headers = [
        alice(idp),
        # Naming bastion's own header in Connection must not make the proxy drop it.
        ("connection", "x-bastion-subject, X_Custom, content-length, keep-alive"),
        ("x-custom", "hop"),
        ("x-other", "kept"),
        ("content-type", "text/plain"),
    ]
    result = served.raw(request_bytes("POST", "/priv/x", headers, b"hello"))
    assert result.status == 200
    seen = echo.received[-1]
    assert seen.header("x-bastion-subject") == "user:alice"
    assert seen.header("x-custom") is None
    assert seen.header("x-other") == "kept"
    assert seen.body == b"hello"  # Content-Length named in Connection: framing untouched


def test_key_id_and_request_id_headers(served: GatewayServer, echo: EchoServer) -> None:
    key, key_id = api_key(served, "mutate-k1")
    with served.client() as client:
        response = client.get("/priv/x", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert forwarded_bastion_headers(echo) == {
        "x-bastion-subject": f"apikey:{key_id}",
        "x-bastion-key-id": key_id,
        "x-bastion-request-id": response.headers["x-request-id"],
    }


def test_values_cannot_split_the_request_head(
    served: GatewayServer, echo: EchoServer, idp: FakeIdP
) -> None:
    token = idp_token(idp, "a\r\nX-Evil: 1", "café 100%")
    with served.client() as client:
        response = client.get("/priv/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert forwarded_bastion_headers(echo) == {
        "x-bastion-subject": "a%0D%0AX-Evil: 1",
        "x-bastion-client": "caf%C3%A9 100%25",
        "x-bastion-request-id": response.headers["x-request-id"],
    }
    assert echo.received[-1].header("x-evil") is None


def test_custom_strip_list(served: GatewayServer, echo: EchoServer) -> None:
    headers = [("x_tenant", "t1"), ("X-Tenant", "t2"), ("x-user-id", "u"), ("x-bastion-x", "1")]
    assert served.raw(request_bytes("GET", "/pub/x", headers)).status == 200
    seen = echo.received[-1]
    assert seen.header("x-tenant") is None and seen.header("x_tenant") is None
    assert seen.header("x-user-id") is None  # the built-in list still applies
    assert seen.header("x-bastion-x") is None
    # The names are checked where the settings and the route table build the rewriter.
    with pytest.raises(ValueError, match="identity header to strip 'bad name'"):
        IdentityHeaders(["bad name"])
    with pytest.raises(ValueError, match="is not a valid header name"):
        IdentityHeaders([""])
