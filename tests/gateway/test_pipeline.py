"""The gateway's steps in order, over real HTTP against a real ``bastion serve``.

What the steps decide is what a request gets: the refusal of the first step that refuses
(framing, match, ip, cors, body, authenticate, authorize, limit), never proxied; an admitted
request proxied with what ``mutate`` added. Identities are real: API keys made with
``bastion keys create`` and access tokens of a trusted local IdP; targets a client would
normalise go over raw sockets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_edge import PROXY, api_key, bearer, forwarded, idp_token, problem, served_with
from _support.gateway_server import GatewayServer, fresh_echo, request_bytes
from bastion.demo.echo import EchoServer
from gateway.idp_support import FakeIdP, IdPThread

APP = "https://app.example.com"

ROUTES = """\
  - name: order
    match: {path: /order, methods: [GET, POST]}
    upstream: {echo}
    auth: [api_key]
    scopes: [order:read]
    ip: {allow: [10.0.0.0/8]}
    cors: {origins: ['https://app.example.com']}
    max_body: 4
    limits: [{per: ip, rate: 1/hour}]
  - name: pub
    match: {path: /pub}
    upstream: {echo}
    public: true
  - name: priv
    match: {path: /priv}
    upstream: {echo}
    auth: [api_key, jwt]
    jwt: {issuers: [{idp}]}
  - name: a
    match: {path: /a}
    upstream: {echo}
    auth: [api_key, jwt]
    jwt: {issuers: [{idp}]}
  - name: c
    match: {path: /c}
    upstream: {echo}
    auth: [api_key]
  - name: api
    match: {path: /api, methods: [GET]}
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


served = served_with(ROUTES, "tls: off\ntrusted_proxies: [127.0.0.2]\n", idp=True)


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    return fresh_echo(echo_upstream)


def test_the_table_order(served: GatewayServer, echo: EchoServer) -> None:
    """A request every step would refuse gets the first step's refusal; fixed one by one."""
    reader, _ = api_key(served, "order-reader", "--scope", "order:read")
    nobody, _ = api_key(served, "order-nobody")
    outsider = forwarded("203.0.113.7")
    office = forwarded("10.0.0.1")
    bad_origin = {"Origin": "https://evil.example"}
    good_origin = {"Origin": APP}

    def send(method: str, head: dict[str, str], body: bytes = b"") -> tuple[int, str]:
        fields = [("Content-Type", "text/plain"), *head.items()]
        return problem(served.raw(request_bytes(method, "/order", fields, body), source=PROXY))[:2]

    assert send("PUT", {**outsider, **bad_origin}, b"too long") == (405, "method_not_allowed")
    assert send("POST", {**outsider, **bad_origin}, b"too long") == (403, "ip_not_allowed")
    assert send("POST", {**office, **bad_origin}, b"too long") == (
        403,
        "cors_origin_not_allowed",
    )
    assert send("POST", {**office, **good_origin}, b"too long") == (413, "body_too_large")
    assert send("POST", {**office, **good_origin}, b"ok") == (401, "unauthenticated")
    assert send("POST", {**office, **good_origin, **bearer(nobody)}, b"ok") == (
        403,
        "insufficient_scope",
    )
    admitted = served.raw(
        request_bytes(
            "POST",
            "/order",
            [*office.items(), *good_origin.items(), *bearer(reader).items()],
            b"ok",
        ),
        source=PROXY,
    )
    assert admitted.status == 200
    assert echo.received[-1].header("x-bastion-subject") is not None  # mutate ran
    assert send("POST", {**office, **good_origin, **bearer(reader)}, b"ok") == (
        429,
        "rate_limited",
    )
    assert len(echo.received) == 1


def test_public_route_is_proxied_anonymously(served: GatewayServer, echo: EchoServer) -> None:
    with served.client() as client:
        result = client.get("/pub/x", headers={"X-Bastion-Subject": "admin"})
    assert result.status_code == 200
    assert result.json()["path"] == "/pub/x"
    seen = echo.received[-1]
    # Anonymous: no identity header; only the request id is added.
    assert [n for n, _ in seen.headers if n.startswith("x-bastion-")] == ["x-bastion-request-id"]


def test_non_public_route_without_authenticators_fails_closed(
    served: GatewayServer, echo: EchoServer
) -> None:
    with served.client() as client:
        response = client.get("/priv/x")
    assert problem(response) == (401, "unauthenticated", "This route requires authentication.")
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'
    assert len(echo.received) == 0 and echo.connections == 0


def test_authenticators_allow_deny_not_responsible(
    served: GatewayServer, echo: EchoServer, idp: FakeIdP
) -> None:
    token = idp_token(idp, "alice", scope="read")
    now = int(time.time())
    expired = idp_token(idp, "alice", scope="read", iat=now - 600, exp=now - 120)
    with served.client() as client:
        # api_key is not responsible for a JWT; jwt vouches for it.
        assert client.get("/a", headers=bearer(token)).status_code == 200
        assert echo.received[-1].header("x-bastion-subject") == "alice"
        # A method that refuses ends the chain with its refusal.
        status, reason, _ = problem(client.get("/a", headers=bearer(expired)))
        assert (status, reason) == (401, "invalid_token")
        # Nobody responsible: the route's own refusal.
        assert problem(client.get("/c", headers=bearer(token))) == (
            401,
            "unauthenticated",
            "This route requires authentication.",
        )
    assert len(echo.received) == 1


def test_unmatched_and_bad_paths_are_never_proxied(served: GatewayServer, echo: EchoServer) -> None:
    def answer(method: str, target: str) -> tuple[int, str]:
        return problem(served.raw(request_bytes(method, target)))[:2]

    assert answer("GET", "/apix") == (404, "route_not_found")
    assert answer("GET", "/other/../apix") == (404, "route_not_found")
    assert answer("POST", "/api/x") == (405, "method_not_allowed")
    assert answer("GET", "/api%2f..%2fadmin") == (400, "invalid_path")
    assert answer("GET", "/../api") == (400, "invalid_path")
    assert echo.connections == 0


def test_matching_uses_the_normalised_raw_path(served: GatewayServer, echo: EchoServer) -> None:
    result = served.raw(request_bytes("GET", "/x/..//%61pi/./y"))
    assert result.json()["path"] == "/api/y"
    # An encoded space stays encoded.
    assert served.raw(request_bytes("GET", "/api/a%20b")).json()["path"] == "/api/a%20b"


def test_websocket_refused_on_a_route_without_websocket(
    served: GatewayServer, echo: EchoServer
) -> None:
    upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    response = served.raw(request_bytes("GET", "/pub", upgrade))
    assert problem(response)[:2] == (403, "websocket_not_allowed")
    assert echo.connections == 0
