"""The cors step: exact origins, preflights answered before authentication, look-alikes refused.

Black-box, against a real ``bastion serve`` in front of the recording echo upstream (and a
canned upstream that sends CORS headers of its own). Requests whose ``Origin`` fields an
HTTP client would merge or refuse go over raw sockets.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from _support import EchoThread
from _support.gateway_edge import bearer, problem
from _support.gateway_server import (
    GatewayServer,
    RawResponse,
    RawUpstream,
    fresh_echo,
    gateway_fixture,
    request_bytes,
)
from bastion.demo.echo import EchoServer

APP = "https://app.example.com"

REFUSED_ORIGIN = (
    403,
    "cors_origin_not_allowed",
    "This origin may not call this route from a browser.",
)

#: An upstream answering with CORS headers of its own.
UPSTREAM_CORS = (
    b"HTTP/1.1 200 OK\r\n"
    b"access-control-allow-origin: *\r\n"
    b"Access-Control-Allow-Credentials: true\r\n"
    b"content-type: text/plain\r\n"
    b"content-length: 2\r\n\r\nok"
)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def cors_upstream() -> Iterator[RawUpstream]:
    upstream = RawUpstream(UPSTREAM_CORS, linger=0)
    try:
        yield upstream
    finally:
        upstream.close()


def _routes(request: pytest.FixtureRequest) -> str:
    upstream: RawUpstream = request.getfixturevalue("cors_upstream")
    return f"""\
  - name: api
    match: {{path: /api, methods: [GET, POST, DELETE]}}
    upstream: {{echo}}
    public: true
    cors:
      origins: ['{APP}', 'http://localhost:3000']
      methods: [GET, POST]
      expose_headers: [RateLimit]
      credentials: true
      max_age: 5m
  - name: private
    match: {{path: /private, methods: [GET]}}
    upstream: {{echo}}
    auth: [api_key]
    api_key_header: X-API-Key
    cors: {{origins: ['{APP}']}}
  - name: keyed
    match: {{path: /keyed, methods: [GET]}}
    upstream: {{echo}}
    auth: [api_key]
    cors: {{origins: ['{APP}'], credentials: true}}
  - name: plain
    match: {{path: /plain, methods: [GET, OPTIONS]}}
    upstream: {{echo}}
    public: true
  - name: upcors
    match: {{path: /upcors}}
    upstream: {upstream.url}
    public: true
    cors: {{origins: ['{APP}']}}
"""


served = gateway_fixture(_routes, "")


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    return fresh_echo(echo_upstream)


@pytest.fixture
def gateway(served: GatewayServer) -> Iterator[httpx.Client]:
    with served.client() as client:
        yield client


def preflight(
    origin: str, method: str = "GET", headers: str | None = None
) -> list[tuple[str, str]]:
    out = [("origin", origin), ("access-control-request-method", method)]
    if headers is not None:
        out.append(("access-control-request-headers", headers))
    return out


def options(served: GatewayServer, path: str, fields: list[tuple[str, str]]) -> RawResponse:
    return served.raw(request_bytes("OPTIONS", path, fields))


def test_preflight_answered_by_bastion(served: GatewayServer, echo: EchoServer) -> None:
    result = options(served, "/api/x", preflight(APP, "POST", "Content-Type, authorization"))
    assert result.status == 204
    assert result.header("access-control-allow-origin") == APP
    assert result.header("access-control-allow-methods") == "GET, HEAD, POST"
    assert result.header("access-control-allow-headers") == "authorization, content-type"
    assert result.header("access-control-allow-credentials") == "true"
    assert result.header("access-control-max-age") == "300"
    assert result.header("vary") == (
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    )
    assert result.body == b""
    assert echo.connections == 0  # never proxied


def test_preflight_needs_no_credentials_and_no_options_method(
    served: GatewayServer, echo: EchoServer
) -> None:
    # /private accepts only GET and needs an API key: the preflight is still answered.
    result = options(served, "/private", preflight(APP, "GET", "x-api-key"))
    assert result.status == 204
    assert result.header("access-control-allow-headers") == "authorization, content-type, x-api-key"
    assert result.header("access-control-allow-credentials") is None
    assert echo.connections == 0


def test_preflight_does_not_let_other_methods_skip_authentication(
    served: GatewayServer,
) -> None:
    # Preflight headers on a GET do not make it a preflight: authentication still runs.
    get = served.raw(request_bytes("GET", "/private", preflight(APP, "GET")))
    assert problem(get)[:2] == (401, "unauthenticated")
    # An OPTIONS without Access-Control-Request-Method is an ordinary request (405 here).
    assert problem(options(served, "/private", [("origin", APP)]))[:2] == (
        405,
        "method_not_allowed",
    )


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://evil.com/https://app.example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com:443",
        "https://app.example.com.",
        "https://APP.example.com",
        "HTTPS://app.example.com",
        "https://app.example.com/",
        "null",
        "*",
        "",
        "https://app.example.co",
    ],
)
def test_look_alike_origins_refused(served: GatewayServer, echo: EchoServer, origin: str) -> None:
    assert problem(options(served, "/api", preflight(origin))) == REFUSED_ORIGIN
    get = served.raw(request_bytes("GET", "/api", [("origin", origin)]))
    assert problem(get) == REFUSED_ORIGIN
    assert echo.connections == 0


def test_two_origin_headers_refused(served: GatewayServer) -> None:
    twice = served.raw(request_bytes("GET", "/api", [("origin", APP), ("origin", APP)]))
    assert problem(twice) == REFUSED_ORIGIN


def test_preflight_method_not_allowed(served: GatewayServer) -> None:
    # DELETE is a route method but not a CORS method.
    assert problem(options(served, "/api", preflight(APP, "DELETE"))) == (
        403,
        "cors_method_not_allowed",
        "'DELETE' is not allowed from this origin.",
    )


def test_preflight_for_a_method_the_route_lacks_is_not_answered(served: GatewayServer) -> None:
    assert problem(options(served, "/api", preflight(APP, "PUT")))[:2] == (
        405,
        "method_not_allowed",
    )


def test_preflight_header_not_allowed(served: GatewayServer) -> None:
    assert problem(options(served, "/api", preflight(APP, "GET", "x-secret, accept"))) == (
        403,
        "cors_header_not_allowed",
        "Request header 'x-secret' is not allowed from this origin.",
    )


def test_actual_request_echoes_the_exact_origin(gateway: httpx.Client, echo: EchoServer) -> None:
    result = gateway.get("/api/x", headers={"origin": "http://localhost:3000"})
    assert result.status_code == 200
    assert result.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert result.headers["access-control-allow-credentials"] == "true"
    assert result.headers["access-control-expose-headers"] == "RateLimit"
    assert "Origin" in result.headers.get("vary", "")
    assert result.headers["access-control-allow-origin"] != "*"


def test_vary_origin_without_origin_header(gateway: httpx.Client, echo: EchoServer) -> None:
    result = gateway.get("/api/x")
    assert result.status_code == 200
    assert result.headers["vary"] == "Origin"
    assert "access-control-allow-origin" not in result.headers


def test_upstream_cors_headers_are_replaced(served: GatewayServer) -> None:
    result = served.raw(request_bytes("GET", "/upcors", [("origin", APP)]))
    assert result.status == 200
    assert result.body == b"ok"
    assert result.header("content-type") == "text/plain"
    # The upstream's own Access-Control-* are dropped; the route's are sent, once.
    assert [v for n, v in result.headers if n == "access-control-allow-origin"] == [APP]
    assert result.header("access-control-allow-credentials") is None


def test_errors_carry_cors_headers_for_allowed_origins(gateway: httpx.Client) -> None:
    refused = gateway.get("/private", headers={"origin": APP})
    assert problem(refused)[:2] == (401, "unauthenticated")
    assert refused.headers["access-control-allow-origin"] == APP


def test_a_refused_api_key_carries_cors_headers(gateway: httpx.Client, echo: EchoServer) -> None:
    refused = gateway.get("/keyed", headers={"origin": APP, **bearer("bst_x")})
    assert refused.status_code == 401
    assert [
        (n.decode().lower(), v.decode())
        for n, v in refused.headers.raw
        if n.lower().startswith(b"access-control-") or n.lower() == b"vary"
    ] == [
        ("access-control-allow-origin", APP),
        ("vary", "Origin"),
        ("access-control-allow-credentials", "true"),
    ]
    assert echo.connections == 0


def test_routes_without_cors_are_untouched(served: GatewayServer, echo: EchoServer) -> None:
    result = options(served, "/plain", preflight(APP))
    # An ordinary OPTIONS, proxied: no CORS headers from bastion.
    assert result.status == 200
    assert result.json()["method"] == "OPTIONS"
    assert result.header("access-control-allow-origin") is None
    assert result.header("vary") is None
