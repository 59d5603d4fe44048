"""The upstream client end to end: a real ``bastion serve`` -> real sockets -> demo echo upstream.

One server for the module (plain HTTP, ``trusted_proxies`` on loopback addresses the tests
connect from), its routes to the module's echo upstream, a dead port, canned raw upstreams
and a self-signed https echo. Each test starts from a fresh echo (knobs reset, its
connections hung up, so counting connections counts this test's). What the upstream
received is read from the echo's record; the client's view from real responses (over raw
sockets where an HTTP client would normalise the request or hide the framing).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from _support import EchoThread, run_cli
from _support.gateway_server import (
    GatewayServer,
    RawUpstream,
    chunk,
    dead_url,
    fresh_echo,
    gateway_fixture,
    raw_exchange,
    request_bytes,
    route,
)
from bastion.crypto.tls import ensure_dev_certificate, server_ssl_context
from bastion.demo.echo import EchoServer

#: The bound on the bytes of an upstream response head's names and values (Python's
#: ``proxy.MAX_RESPONSE_HEAD_BYTES``, the native client's ``head::UPSTREAM_FIELD_BYTES``).
MAX_RESPONSE_FIELD_BYTES = 64 * 1024
#: Loopback addresses the gateway trusts as proxies (the tests connect from them).
TRUSTED = "127.0.1.0/24, 127.0.0.2"


def _head_upstream(fields: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + fields + b"content-length: 2\r\n\r\nok"


LARGE_BODY = b"b" * (MAX_RESPONSE_FIELD_BYTES * 2)


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def raw_upstreams() -> Iterator[dict[str, RawUpstream]]:
    upstreams = {
        "bighead": RawUpstream(
            # One byte over: "x-big" and its value, plus the canned head's own fields.
            _head_upstream(b"x-big: " + b"a" * MAX_RESPONSE_FIELD_BYTES + b"\r\n")
        ),
        "manyheads": RawUpstream(
            _head_upstream(b"".join(b"x-filler-%d: %s\r\n" % (i, b"a" * 100) for i in range(800)))
        ),
        "bigbody": RawUpstream(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(LARGE_BODY), LARGE_BODY)
        ),
        "hop": RawUpstream(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: text/plain\r\n"
            b"Connection: keep-alive, X-Internal\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"X-Internal: secret\r\n"
            b"Proxy-Authenticate: Basic\r\n"
            b"Upgrade: h2c\r\n"
            b"Trailer: x\r\n"
            b"Set-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"\r\n" + chunk(b"hi") + chunk(b"")
        ),
    }
    try:
        yield upstreams
    finally:
        for upstream in upstreams.values():
            upstream.close()


@pytest.fixture(scope="module")
def tls_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EchoThread, Path]]:
    tmp = tmp_path_factory.mktemp("tls-echo")
    cert, key = ensure_dev_certificate(tmp / "tls", hosts=("localhost", "127.0.0.1"))
    thread = EchoThread(tls=server_ssl_context(cert, key))
    try:
        yield thread, cert
    finally:
        thread.close()


def _routes(request: pytest.FixtureRequest) -> str:
    raw: dict[str, RawUpstream] = request.getfixturevalue("raw_upstreams")
    tls, cert = request.getfixturevalue("tls_echo")
    return "".join(
        [
            route("api", "{echo}"),
            route("strip", "{echo}/base", strip_prefix=True),
            route("slow", "{echo}", timeout=0.2),
            route("read", "{echo}", read_timeout=0.2),
            route("small", "{echo}", max_body=10),
            route("down", dead_url()),
            route("tls", tls.server.url),
            route("tls-trusted", tls.server.url, path="/trusted-tls", upstream_ca=cert),
            *(route(name, upstream.url) for name, upstream in raw.items()),
        ]
    )


served = gateway_fixture(_routes, f"tls: off\ntrusted_proxies: [{TRUSTED}]\n")


@pytest.fixture
def echo(echo_upstream: EchoThread) -> EchoServer:
    """The module's echo upstream, fresh for this test."""
    return fresh_echo(echo_upstream)


@pytest.fixture
def gateway(served: GatewayServer) -> Iterator[httpx.Client]:
    with served.client(headers={"Host": "gw.test"}) as client:
        yield client


def _problem(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["status"] == response.status_code
    return response.status_code, doc["reason"], doc["detail"]


def test_get_forwards_normalised_path_and_raw_query(
    served: GatewayServer, echo: EchoServer
) -> None:
    result = served.raw(request_bytes("GET", "//api/./%78?a=1&b=%2F&c=%zz&a=2"))
    assert result.status == 200
    assert result.header("content-type") == "application/json"
    doc = result.json()
    assert doc["method"] == "GET"
    assert doc["path"] == "/api/x"
    assert doc["query"] == "a=1&b=%2F&c=%zz&a=2"
    assert doc["upstream"] == "bastion demo echo"
    got = echo.received[-1]
    assert got.header("content-length") is None  # GET without a body announces none
    assert got.header("host") == f"127.0.0.1:{echo.port}"


def test_strip_prefix_and_base_path(gateway: httpx.Client, echo: EchoServer) -> None:
    assert gateway.get("/strip/a/b").json()["path"] == "/base/a/b"
    assert gateway.get("/strip").json()["path"] == "/base/"


def test_post_with_content_length(served: GatewayServer, echo: EchoServer) -> None:
    result = served.raw(request_bytes("POST", "/api/x", [("Content-Length", "7")], b'{"a":1}'))
    assert result.json()["body"] == '{"a":1}'
    assert echo.received[-1].header("content-length") == "7"
    assert echo.received[-1].header("transfer-encoding") is None


def test_post_empty_body_announces_zero(served: GatewayServer, echo: EchoServer) -> None:
    assert served.raw(request_bytes("POST", "/api/x")).status == 200
    assert echo.received[-1].header("content-length") == "0"


def test_chunked_request_is_streamed_chunked(served: GatewayServer, echo: EchoServer) -> None:
    # Sent apart, so the body's end is not read with its first part (which would go on
    # with a Content-Length, as Python's server hands a body complete in one message).
    head = request_bytes("PUT", "/api/x", [("Transfer-Encoding", "chunked")])
    parts = [head + chunk(b"hello "), chunk(b"chunked "), chunk(b"world"), chunk(b"")]
    result = served.raw(parts, pause=0.2)
    assert result.status == 200
    assert result.json()["body"] == "hello chunked world"
    assert echo.received[-1].header("transfer-encoding") == "chunked"
    assert echo.received[-1].header("content-length") is None


def test_streamed_body_with_content_length(served: GatewayServer, echo: EchoServer) -> None:
    head = request_bytes("POST", "/api/x", [("Content-Length", "2048")])
    result = served.raw([head + b"a" * 1000, b"b" * 1000, b"c" * 48], pause=0.05)
    assert result.json()["body"] == "a" * 1000 + "b" * 1000 + "c" * 48
    assert echo.received[-1].header("content-length") == "2048"


def test_binary_body_round_trip(gateway: httpx.Client, echo: EchoServer) -> None:
    doc = gateway.post("/api/x", content=bytes(range(256))).json()
    assert doc["body_encoding"] == "base64"
    assert echo.received[-1].body == bytes(range(256))


def test_large_bodies_stream_both_ways(served: GatewayServer, echo: EchoServer) -> None:
    payload = b"0123456789abcdef" * (5 * 1024 * 1024 // 16)  # 5 MiB
    head = request_bytes("POST", "/api/big", [("Content-Length", str(len(payload)))])
    parts = [head] + [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    # A slow client (it reads the answer a piece at a time): the answer streams to it.
    result = served.raw(parts, read_delay=0.002, timeout=30)
    assert result.status == 200
    assert result.complete
    assert len(result.body) > len(payload)
    assert result.json()["body"].encode() == payload
    # The connection is still reusable after a large exchange.
    assert served.raw(request_bytes("GET", "/api/again")).status == 200
    assert echo.connections == 1


def test_keep_alive_connections_are_reused(gateway: httpx.Client, echo: EchoServer) -> None:
    for i in range(5):
        assert gateway.get(f"/api/{i}").status_code == 200
    assert gateway.post("/api/x", content=b"x").status_code == 200
    assert echo.connections == 1
    assert [r.connection for r in echo.received] == [1] * 6


def _get_all(served: GatewayServer, paths: list[str]) -> list[httpx.Response]:
    def get(path: str) -> httpx.Response:
        with served.client() as client:  # a connection to the gateway of its own
            return client.get(path)

    with ThreadPoolExecutor(len(paths)) as pool:
        return list(pool.map(get, paths))


def test_concurrent_requests_use_several_connections(
    served: GatewayServer, echo: EchoServer
) -> None:
    echo.delay = 0.3
    results = _get_all(served, [f"/api/{i}" for i in range(4)])
    assert sorted(r.json()["path"] for r in results) == [f"/api/{i}" for i in range(4)]
    assert echo.connections == 4
    _get_all(served, [f"/api/{i}" for i in range(4)])
    assert echo.connections == 4  # all four went back to the pool


# test_pool_size_bounds_idle_connections and test_idle_connections_expire drove the Python
# client's pool_size / idle_timeout, which no setting exposes: the native pool keeps 64 idle
# connections per target for 30 s (gateway/compile/upstream.py). Their behaviour is tested
# where it lives: native/src/client/tests.rs (idle_connections_expire_and_max_idle_bounds_the_pool)
# and native/src/upstream/tests.rs (keep_alive_connections_are_reused_and_bounded,
# idle_connections_expire).


def test_upstream_connection_close_is_not_reused(gateway: httpx.Client, echo: EchoServer) -> None:
    echo.keep_alive = False
    assert gateway.get("/api/1").status_code == 200
    assert gateway.get("/api/2").status_code == 200
    assert echo.connections == 2


def test_chunked_upstream_response(served: GatewayServer, echo: EchoServer) -> None:
    echo.chunked = True
    result = served.raw(request_bytes("POST", "/api/x", (), b"z" * 100_000))
    assert result.complete
    assert result.json()["body"] == "z" * 100_000
    # The gateway frames the body itself: one framing header, never both.
    framing = [n for n in result.names() if n in ("transfer-encoding", "content-length")]
    assert len(framing) == 1
    assert served.raw(request_bytes("GET", "/api/y")).status == 200
    assert echo.connections == 1


def test_head_response_has_no_body_and_keeps_the_connection(
    served: GatewayServer, echo: EchoServer
) -> None:
    # Both on one client connection: the HEAD answer must leave no body on it.
    head, get = raw_exchange(
        served.port, [request_bytes("HEAD", "/api/x"), request_bytes("GET", "/api/y")], responses=2
    )
    assert head.status == 200
    assert head.body == b""
    assert int(head.header("content-length") or 0) > 0
    assert get.json()["path"] == "/api/y"
    assert echo.connections == 1


def test_upstream_down_is_502(gateway: httpx.Client) -> None:
    assert _problem(gateway.get("/down/x")) == (
        502,
        "upstream_unavailable",
        "The upstream could not be reached.",
    )


def test_slow_upstream_is_504(gateway: httpx.Client, echo: EchoServer) -> None:
    echo.delay = 2.0
    started = time.monotonic()
    response = gateway.get("/slow/x")
    assert time.monotonic() - started < 1.0
    assert _problem(response) == (504, "upstream_timeout", "The upstream did not answer in time.")


def test_read_timeout_is_504(gateway: httpx.Client, echo: EchoServer) -> None:
    echo.delay = 2.0
    started = time.monotonic()
    response = gateway.get("/read/x")
    assert time.monotonic() - started < 1.0
    assert _problem(response)[:2] == (504, "upstream_timeout")


def test_upstream_dying_mid_response_aborts(served: GatewayServer, echo: EchoServer) -> None:
    echo.truncate = True
    answers = raw_exchange(served.port, request_bytes("POST", "/api/x", (), b"q" * 10_000))
    # Never a forged end of body: the connection closes with the body short of its
    # Content-Length (or before the head, if the head had not gone out yet).
    assert [(a.status, a.complete, a.closed) for a in answers] in ([], [(200, False, True)])
    assert len(echo.received) == 1


def test_hop_by_hop_and_connection_named_headers_are_stripped(
    served: GatewayServer, echo: EchoServer
) -> None:
    result = served.raw(
        request_bytes(
            "GET",
            "/api/x",
            [
                ("connection", "keep-alive, X-Secret"),
                ("connection", "x-other"),
                ("x-secret", "s"),
                ("x-other", "o"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("trailer", "x-t"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic abc"),
                ("proxy-connection", "keep-alive"),
                ("expect", "100-continue"),
                ("x-kept", "yes"),
            ],
        )
    )
    assert result.status == 200
    names = {name for name, _ in echo.received[-1].headers}
    assert names == {
        "host",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-bastion-request-id",  # the request id bastion adds (identity_headers.request_id)
    }


def test_response_hop_by_hop_headers_are_stripped(served: GatewayServer) -> None:
    result = served.raw(request_bytes("GET", "/hop/x"))
    assert result.status == 200
    assert result.body == b"hi"
    assert result.header("content-type") == "text/plain"
    assert [v for n, v in result.headers if n == "set-cookie"] == ["a=1", "b=2"]
    for name in ("connection", "keep-alive", "x-internal", "proxy-authenticate", "upgrade"):
        assert result.header(name) is None, name
    assert result.header("trailer") is None


SPOOFED = [
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=1.2.3.4"),
    ("x-real-ip", "1.2.3.4"),
]


def test_forwarded_headers_from_untrusted_peer_are_replaced(
    served: GatewayServer, echo: EchoServer
) -> None:
    with served.client(source="127.0.0.1", headers={"Host": "gw.test"}) as client:
        assert client.get("/api/x", headers=SPOOFED).status_code == 200
    got = echo.received[-1]
    assert got.header("x-forwarded-for") == "127.0.0.1"
    assert got.header("x-forwarded-proto") == "http"
    assert got.header("x-forwarded-host") == "gw.test"
    assert got.header("forwarded") is None
    assert got.header("x-real-ip") is None
    assert got.header("host") == f"127.0.0.1:{echo.port}"


def test_forwarded_headers_from_trusted_proxy_are_appended(
    served: GatewayServer, echo: EchoServer
) -> None:
    with served.client(source="127.0.1.3") as client:  # in the trusted 127.0.1.0/24
        assert client.get("/api/x", headers=SPOOFED).status_code == 200
    got = echo.received[-1]
    assert got.header("x-forwarded-for") == "1.2.3.4, 127.0.1.3"
    assert got.header("x-forwarded-proto") == "https"
    assert got.header("x-forwarded-host") == "evil.example"
    assert got.header("forwarded") is None
    # A trusted proxy that sent no X-Forwarded-For: the peer itself is the client, over
    # the scheme it connected with (plain HTTP here).
    with served.client(source="127.0.0.2") as client:  # a trusted single address
        assert client.get("/api/x").status_code == 200
    got = echo.received[-1]
    assert got.header("x-forwarded-for") == "127.0.0.2"
    assert got.header("x-forwarded-proto") == "http"
    # An untrusted peer next to the trusted range.
    with served.client(source="127.0.2.1") as client:
        assert client.get("/api/x", headers=SPOOFED).status_code == 200
    assert echo.received[-1].header("x-forwarded-for") == "127.0.2.1"


# Issue 13: override, client-address and proxy-identity headers a client may forge.
OVERRIDES = [
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-original-uri", "/admin"),
    ("X_Original_URL", "/admin"),
    ("x-forwarded-prefix", "/evil"),
    ("x-forwarded-port", "1"),
    ("x-forwarded-server", "evil"),
    ("x-forwarded-email", "admin@example.com"),
    ("x-forwarded-groups", "admins"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("true-client-ip", "6.6.6.6"),
    ("x-client-ip", "6.6.6.6"),
    ("cf-connecting-ip", "6.6.6.6"),
    ("x-cluster-client-ip", "6.6.6.6"),
    ("x-kept", "yes"),
]
ALWAYS = {
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x_original_url",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x_forwarded_for",
}


def test_override_and_client_ip_headers_from_untrusted_peer_are_stripped(
    served: GatewayServer, echo: EchoServer
) -> None:
    assert served.raw(request_bytes("GET", "/api/x", OVERRIDES)).status == 200
    names = {name for name, _ in echo.received[-1].headers}
    assert names == {
        "host",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-bastion-request-id",  # the request id bastion adds (identity_headers.request_id)
    }
    assert echo.received[-1].header("x-forwarded-for") == "127.0.0.1"


def test_trusted_proxy_keeps_its_forwarded_headers_but_never_path_overrides(
    served: GatewayServer, echo: EchoServer
) -> None:
    assert served.raw(request_bytes("GET", "/api/x", OVERRIDES), source="127.0.1.3").status == 200
    got = echo.received[-1]
    names = {name for name, _ in got.headers}
    assert not names & ALWAYS
    assert got.header("x-forwarded-prefix") == "/evil"
    assert got.header("x-forwarded-port") == "1"
    assert got.header("cf-connecting-ip") == "6.6.6.6"
    assert got.header("x-forwarded-for") == "127.0.1.3"


def test_stale_pooled_connection_is_retried_for_get(
    gateway: httpx.Client, echo: EchoServer
) -> None:
    echo.drop_after = 1  # every connection answers once, then hangs up on the next request
    assert gateway.get("/api/1").status_code == 200
    result = gateway.get("/api/2")
    assert result.json()["path"] == "/api/2"
    assert echo.connections == 2
    assert [r.path for r in echo.received] == ["/api/1", "/api/2"]


def test_stale_pooled_connection_is_not_retried_for_post(
    gateway: httpx.Client, echo: EchoServer
) -> None:
    echo.drop_after = 1
    assert gateway.post("/api/1", content=b"a").status_code == 200
    assert _problem(gateway.post("/api/2", content=b"b")) == (
        502,
        "upstream_unavailable",
        "The upstream closed the connection without answering.",
    )
    assert echo.connections == 1
    assert [r.path for r in echo.received] == ["/api/1"]


def test_fresh_connection_closed_without_answer_is_not_retried(
    gateway: httpx.Client, echo: EchoServer
) -> None:
    echo.drop_after = 0
    assert _problem(gateway.get("/api/x"))[:2] == (502, "upstream_unavailable")
    assert echo.connections == 1


TE_NOT_CHUNKED = "Transfer-Encoding must be exactly 'chunked'."
BOTH = "The request has both Content-Length and Transfer-Encoding; send only one."
BAD_LENGTH = "The request's Content-Length header is malformed."


# Python's framing step refuses each of these with 400 ``bad_request_framing``, its detail
# naming the fault; the native front answers it before reading the body (a body nobody may
# forward is answered whatever asks for it), with ``connection: close``; nothing reaches the
# upstream, and no byte after the head is read as another request (RFC 9112 §6.1, §6.3).
@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([("content-length", "3"), ("transfer-encoding", "chunked")], BOTH),
        ([("content-length", "abc")], BAD_LENGTH),
        ([("content-length", "-1")], BAD_LENGTH),
        ([("content-length", "+3")], BAD_LENGTH),
        ([("content-length", "1, 1")], BAD_LENGTH),
        ([("content-length", "3"), ("content-length", "3")], BAD_LENGTH),
        ([("content-length", "")], BAD_LENGTH),
        ([("transfer-encoding", "gzip, chunked")], TE_NOT_CHUNKED),
        ([("transfer-encoding", "identity")], TE_NOT_CHUNKED),
    ],
)
def test_bad_framing_is_400(
    served: GatewayServer,
    echo: EchoServer,
    headers: list[tuple[str, str]],
    detail: str,
) -> None:
    chunked = ("transfer-encoding", "chunked") in headers
    body = chunk(b"abc") + chunk(b"") if chunked else b"abc"
    answers = raw_exchange(served.port, request_bytes("POST", "/api/x", headers, body), timeout=5)
    [refused] = answers
    assert refused.status == 400
    assert refused.header("connection") == "close"
    doc = refused.json()
    assert (doc["reason"], doc["detail"]) == ("bad_request_framing", detail)
    assert echo.connections == 0


# Over HTTP a body shorter than its Content-Length is a client that stopped sending (here:
# half-closed). Python refused it with 400 ``bad_request`` ("The request body does not match
# its Content-Length."). The native core
# answers 503 ``service_unavailable`` ("The client went away before its request body was
# read."): ``verdict::problem_of`` renders ``UpstreamError::ClientGone`` as a 503, though
# ``UpstreamError::problem`` says 400 ``bad_request``.
def test_body_shorter_than_content_length_is_400(served: GatewayServer, echo: EchoServer) -> None:
    head = [("Content-Length", "3")]
    native = served.raw(request_bytes("POST", "/api/x", head, b"ab"), half_close=True)
    assert len(echo.received) == 0  # nothing went upstream whole
    assert native.status == 400
    assert native.json()["reason"] == "bad_request"


def test_body_size_limit(served: GatewayServer, echo: EchoServer) -> None:
    with served.client() as client:
        too_large = client.post("/small/x", content=b"x" * 11)
        assert _problem(too_large) == (
            413,
            "body_too_large",
            "The request body is larger than 10 bytes.",
        )
    head = request_bytes("POST", "/small/x", [("Transfer-Encoding", "chunked")])
    streamed = served.raw([head + chunk(b"x" * 6), chunk(b"x" * 6) + chunk(b"")], pause=0.2)
    assert streamed.status == 413
    assert streamed.json()["reason"] == "body_too_large"
    with served.client() as client:
        assert client.post("/small/x", content=b"x" * 10).json()["body"] == "x" * 10


def test_client_disconnect_during_upload(served: GatewayServer, echo: EchoServer) -> None:
    head = request_bytes("POST", "/api/x", [("Content-Length", "100")])
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(head + b"part")
        time.sleep(0.1)
    time.sleep(0.3)
    assert len(echo.received) == 0
    with served.client() as client:  # the gateway goes on
        assert client.get("/api/after").status_code == 200


def test_https_upstream_is_verified(
    gateway: httpx.Client, tls_echo: tuple[EchoThread, Path]
) -> None:
    server = tls_echo[0].server
    fresh_echo(tls_echo[0])
    assert server.url.startswith("https://")
    status, reason, detail = _problem(gateway.get("/tls/x"))  # self-signed: not trusted
    assert (status, reason) == (502, "upstream_tls_error")
    # Python named OpenSSL's verify message ("… not accepted (self-signed certificate).").
    assert detail == "The TLS handshake with the upstream failed."
    for _ in range(3):
        assert gateway.get("/trusted-tls/x").json()["path"] == "/trusted-tls/x"
    assert server.connections == 2  # one refused handshake, then one reused connection


def test_trusted_proxies_validation(tmp_path: Path, served: GatewayServer) -> None:
    config = tmp_path / "bastion.yaml"
    config.write_text("tls: off\ntrusted_proxies: [not-an-ip]\n")
    checked = run_cli("routes", "list", "-c", str(config), cwd=tmp_path)
    assert checked.returncode == 2
    assert "trusted_proxies[0]: 'not-an-ip' is not an IP address or network" in checked.stderr
    # 127.0.1.0/24 and 127.0.0.2 are trusted (their X-Forwarded-For is kept), 127.0.0.3 not.
    for source, trusted in (("127.0.1.77", True), ("127.0.0.2", True), ("127.0.0.3", False)):
        with served.client(source=source) as client:
            doc = client.get("/api/x", headers={"X-Forwarded-For": "198.51.100.1"}).json()
        expected = f"198.51.100.1, {source}" if trusted else source
        assert doc["headers"]["x-forwarded-for"] == expected, source


@pytest.mark.parametrize("chunked_head", [False, True])
def test_oversized_upstream_response_head_is_502(served: GatewayServer, chunked_head: bool) -> None:
    # A head over the bound (64 KiB of names and values, as Python's; or over 100 fields),
    # in one header or in many small ones.
    result = served.raw(request_bytes("GET", "/manyheads/x" if chunked_head else "/bighead/x"))
    assert result.status == 502
    assert result.json()["reason"] == "upstream_unavailable"


def test_large_body_with_small_head_in_one_packet_is_relayed(gateway: httpx.Client) -> None:
    # Bytes beyond the head in the same read are body, not head: no false refusal.
    result = gateway.get("/bigbody/x")
    assert result.status_code == 200
    assert result.content == LARGE_BODY
