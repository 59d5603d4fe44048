"""Request hygiene over real HTTP: header limits, body framing and size, methods, Host,
method overrides.

One ``bastion serve`` for the module (``request_limits``: 20 header fields, 1000 header
bytes, 100 body bytes), routes ``small`` (``max_body: 10``), ``default`` (the default
limit) and ``orders`` (an API key's scopes per method). Each refusal is checked as its
problem document and its ``gateway.denied`` row (the step that refused it), and the echo
upstream shows that nothing refused reached it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread
from _support.gateway_authn import Keys, refused
from _support.gateway_server import (
    GatewayServer,
    chunk,
    fresh_echo,
    request_bytes,
    serve_gateway,
)

SETTINGS = (
    "tls: off\ntrusted_proxies: [192.0.2.1]\n"
    "request_limits: {max_headers: 20, max_header_bytes: 1000, max_body: 100}\n"
)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    up = echo_upstream.server.url
    routes = (
        f"  - name: small\n    match: {{path: /small}}\n    upstream: {up}\n"
        "    public: true\n    max_body: 10\n"
        f"  - name: default\n    match: {{path: /default}}\n    upstream: {up}\n"
        "    public: true\n"
        f"  - name: orders\n    match: {{path: /orders}}\n    upstream: {up}\n"
        "    auth: [api_key]\n    scopes: {GET: [orders:read], '*': [orders:write]}\n"
    )
    with serve_gateway(tmp_path_factory.mktemp("hygiene"), routes, SETTINGS) as server:
        yield server


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoThread:
    fresh_echo(echo_upstream)
    return echo_upstream


def test_declared_body_over_route_limit_is_413_before_reading(
    served: GatewayServer, echo: EchoThread
) -> None:
    answer = served.raw(request_bytes("POST", "/small", body=b"x" * 11))
    row = refused(served, answer, 413, "body_too_large", "small", step="body")
    assert answer.json()["detail"] == "The request body is larger than 10 bytes."
    assert row.data["status"] == 413
    assert echo.server.connections == 0


def test_body_at_the_limit_passes(served: GatewayServer, echo: EchoThread) -> None:
    answer = served.raw(request_bytes("POST", "/small", body=b"x" * 10))
    assert answer.status == 200
    assert answer.json()["body"] == "x" * 10


def test_default_limit_applies_to_routes_without_max_body(
    served: GatewayServer, echo: EchoThread
) -> None:
    over = served.raw(request_bytes("POST", "/default", body=b"x" * 101))
    refused(served, over, 413, "body_too_large", "default", step="body")
    assert over.json()["detail"] == "The request body is larger than 100 bytes."
    assert served.raw(request_bytes("POST", "/default", body=b"x" * 100)).status == 200


def test_chunked_body_growing_past_the_limit_is_413(
    served: GatewayServer, echo: EchoThread
) -> None:
    head = request_bytes("POST", "/small", {"Transfer-Encoding": "chunked"})
    answer = served.raw(
        [head, chunk(b"x" * 6), chunk(b"x" * 6), chunk(b"x"), chunk(b"")], pause=0.05
    )
    assert (answer.status, answer.json()["reason"]) == (413, "body_too_large")
    # Nothing complete reached the upstream, and the next request is served.
    assert all(r.body != b"x" * 12 for r in echo.server.received)
    again = served.raw([head, chunk(b"x" * 5), chunk(b"x" * 5), chunk(b"")])
    assert again.status == 200
    assert again.json()["body"] == "x" * 10


def test_too_many_headers_is_431(served: GatewayServer, echo: EchoThread) -> None:
    headers = [(f"x-h{i}", "v") for i in range(20)]  # + host = 21
    answer = served.raw(request_bytes("GET", "/default", headers))
    assert (answer.status, answer.json()["reason"]) == (431, "headers_too_large")
    assert answer.json()["detail"] == "The request has more than 20 header fields."
    assert served.raw(request_bytes("GET", "/default", headers[:19])).status == 200


def test_too_many_header_bytes_is_431_before_matching(
    served: GatewayServer, echo: EchoThread
) -> None:
    for path in ("/default", "/nowhere"):
        answer = served.raw(request_bytes("GET", path, [("x-big", "a" * 1000)]))
        assert (answer.status, answer.json()["reason"]) == (431, "headers_too_large")
        assert answer.json()["detail"] == "The request headers are larger than 1000 bytes."
    assert echo.server.connections == 0


def test_method_override_is_ignored_and_stripped(served: GatewayServer, echo: EchoThread) -> None:
    _, key = Keys(served).create(scopes=["orders:read"])
    auth = ("Authorization", f"Bearer {key}")
    # Judged as the POST it is (orders:write), whatever the override says.
    post = served.raw(request_bytes("POST", "/orders", [auth, ("X-HTTP-Method-Override", "GET")]))
    refused(served, post, 403, "insufficient_scope", "orders", step="authorize")
    overrides = [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
    ]
    got = served.raw(request_bytes("GET", "/orders", [auth, *overrides]))
    assert got.status == 200
    (seen,) = echo.server.received
    assert seen.method == "GET"
    forwarded = {name for name, _ in seen.headers}
    assert not forwarded & {"x-http-method-override", "x-http-method", "x-method-override"}


def test_framing_headers_in_any_case_are_checked(served: GatewayServer, echo: EchoThread) -> None:
    head = request_bytes(
        "POST", "/small", [("Content-Length", "3"), ("TRANSFER-ENCODING", "chunked")]
    )
    answer = served.raw(head + b"abc")
    assert (answer.status, answer.json()["reason"]) == (400, "bad_request_framing")
    assert echo.server.connections == 0


@pytest.mark.parametrize("method", ["delete", "Delete", "gEt", "X" * 33])
def test_methods_that_are_not_upper_case_tokens_are_400_before_matching(
    served: GatewayServer, echo: EchoThread, method: str
) -> None:
    # "/nowhere" matches no route: the method is refused before matching.
    for path in ("/default", "/nowhere"):
        answer = served.raw(request_bytes(method, path))
        assert (answer.status, answer.json()["reason"]) == (400, "invalid_method")
        assert answer.json()["detail"] == (
            "The request method must be an upper-case HTTP method (e.g. DELETE, not delete)."
        )
    assert echo.server.connections == 0


@pytest.mark.parametrize("method", ["DELETE", "PROPFIND", "M-SEARCH", "PURGE"])
def test_upper_case_token_methods_pass(
    served: GatewayServer, echo: EchoThread, method: str
) -> None:
    answer = served.raw(request_bytes(method, "/default"))
    assert answer.status == 200
    assert answer.json()["method"] == method


@pytest.mark.parametrize(
    ("request_head", "detail"),
    [
        (
            b"GET /default HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\n\r\n",
            "The request has more than one Host header; send one.",
        ),
        (
            b"GET /default HTTP/1.0\r\nHost: gw.test\r\nHOST: gw.test\r\n\r\n",
            "The request has more than one Host header; send one.",
        ),
        (b"GET /default HTTP/1.1\r\n\r\n", "An HTTP/1.1 request must carry a Host header."),
        (
            b"GET /default HTTP/1.1\r\nHost: \r\n\r\n",
            "An HTTP/1.1 request must carry a Host header.",
        ),
    ],
)
def test_ambiguous_or_missing_host_is_400(
    served: GatewayServer, echo: EchoThread, request_head: bytes, detail: str
) -> None:
    answer = served.raw(request_head)
    assert (answer.status, answer.json()["reason"]) == (400, "invalid_host")
    assert answer.json()["detail"] == detail
    assert echo.server.connections == 0


def test_host_is_optional_before_http_1_1(served: GatewayServer, echo: EchoThread) -> None:
    answer = served.raw(b"GET /default HTTP/1.0\r\n\r\n")
    assert answer.status == 200
    assert answer.json()["path"] == "/default"
