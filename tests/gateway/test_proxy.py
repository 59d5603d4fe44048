"""The upstream client end to end: Gateway -> real sockets -> demo echo upstream."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion.crypto.tls import ensure_dev_certificate, server_ssl_context
from bastion.demo.echo import EchoServer, start_echo_server
from bastion.gateway import proxy
from bastion.gateway.errors import (
    BadRequestError,
    RequestTooLargeError,
    UpstreamAbortedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from bastion.gateway.pipeline import Gateway
from bastion.gateway.proxy import UpstreamClient
from gateway.gateway_support import Recorder, call, make_receive, make_scope, route


@pytest.fixture
async def gateway(echo: EchoServer) -> AsyncIterator[Gateway]:
    gw = Gateway(
        [
            route("api", "/api", echo.url),
            route("strip", "/strip", echo.url + "/base", strip_prefix=True),
        ]
    )
    try:
        yield gw
    finally:
        await gw.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_get_forwards_normalised_path_and_raw_query(
    gateway: Gateway, echo: EchoServer
) -> None:
    result = await call(
        gateway, "GET", "/api/x", raw_path=b"//api/./%78", query=b"a=1&b=%2F&c=%zz&a=2"
    )
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


async def test_strip_prefix_and_base_path(gateway: Gateway, echo: EchoServer) -> None:
    assert (await call(gateway, "GET", "/strip/a/b")).json()["path"] == "/base/a/b"
    assert (await call(gateway, "GET", "/strip")).json()["path"] == "/base/"


async def test_post_with_content_length(gateway: Gateway, echo: EchoServer) -> None:
    result = await call(
        gateway, "POST", "/api/x", body=b'{"a":1}', headers=[("content-length", "7")]
    )
    assert result.json()["body"] == '{"a":1}'
    assert echo.received[-1].header("content-length") == "7"
    assert echo.received[-1].header("transfer-encoding") is None


async def test_post_empty_body_announces_zero(gateway: Gateway, echo: EchoServer) -> None:
    await call(gateway, "POST", "/api/x")
    assert echo.received[-1].header("content-length") == "0"


async def test_chunked_request_is_streamed_chunked(gateway: Gateway, echo: EchoServer) -> None:
    chunks = [b"hello ", b"", b"chunked ", b"world"]
    result = await call(
        gateway, "PUT", "/api/x", chunks=chunks, headers=[("transfer-encoding", "chunked")]
    )
    assert result.json()["body"] == "hello chunked world"
    assert echo.received[-1].header("transfer-encoding") == "chunked"
    assert echo.received[-1].header("content-length") is None


async def test_streamed_body_with_content_length(gateway: Gateway, echo: EchoServer) -> None:
    chunks = [b"a" * 1000, b"b" * 1000, b"c" * 48]
    result = await call(
        gateway, "POST", "/api/x", chunks=chunks, headers=[("content-length", "2048")]
    )
    assert result.json()["body"] == "a" * 1000 + "b" * 1000 + "c" * 48
    assert echo.received[-1].header("content-length") == "2048"


async def test_binary_body_round_trip(gateway: Gateway) -> None:
    result = await call(gateway, "POST", "/api/x", body=bytes(range(256)))
    doc = result.json()
    assert doc["body_encoding"] == "base64"


async def test_large_bodies_stream_both_ways(
    gateway: Gateway, echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    paused: list[bool] = []
    original_take = proxy._Connection.take

    def take(self: proxy._Connection) -> bytes:
        paused.append(self.read_paused)
        return original_take(self)

    monkeypatch.setattr(proxy._Connection, "take", take)
    payload = b"0123456789abcdef" * (5 * 1024 * 1024 // 16)  # 5 MiB
    chunks = [payload[i : i + 65536] for i in range(0, len(payload), 65536)]
    result = await call(
        gateway,
        "POST",
        "/api/big",
        chunks=chunks,
        headers=[("content-length", str(len(payload)))],
        send_delay=0.002,  # a slow client: the upstream must be paused, not buffered
    )
    assert result.status == 200
    assert len(result.body) > len(payload)
    assert result.json()["body"].encode() == payload
    assert result.body_messages > 2  # streamed in pieces, not one buffered blob
    assert any(paused), "reading from the upstream was never paused for the slow client"
    # The connection is still reusable after a large exchange.
    await call(gateway, "GET", "/api/again")
    assert echo.connections == 1


async def test_keep_alive_connections_are_reused(gateway: Gateway, echo: EchoServer) -> None:
    for i in range(5):
        await call(gateway, "GET", f"/api/{i}")
    await call(gateway, "POST", "/api/x", body=b"x")
    assert echo.connections == 1
    assert [r.connection for r in echo.received] == [1] * 6
    assert gateway.client.connections_opened(gateway.matcher.routes[0].upstream) == 1


async def test_concurrent_requests_use_several_connections(
    gateway: Gateway, echo: EchoServer
) -> None:
    echo.delay = 0.05
    results = await asyncio.gather(*(call(gateway, "GET", f"/api/{i}") for i in range(4)))
    assert sorted(r.json()["path"] for r in results) == [f"/api/{i}" for i in range(4)]
    assert echo.connections == 4
    await asyncio.gather(*(call(gateway, "GET", f"/api/{i}") for i in range(4)))
    assert echo.connections == 4  # all four went back to the pool


async def test_pool_size_bounds_idle_connections(echo: EchoServer) -> None:
    gw = Gateway([route("api", "/", echo.url)], client=UpstreamClient(pool_size=2))
    echo.delay = 0.05
    await asyncio.gather(*(call(gw, "GET", f"/{i}") for i in range(4)))
    upstream = gw.matcher.routes[0].upstream
    assert len(gw.client.pools[upstream.key].idle) == 2
    await gw.shutdown()


async def test_idle_connections_expire(echo: EchoServer) -> None:
    gw = Gateway([route("api", "/", echo.url)], client=UpstreamClient(idle_timeout=0.1))
    await call(gw, "GET", "/")
    await asyncio.sleep(0.25)
    upstream = gw.matcher.routes[0].upstream
    assert len(gw.client.pools[upstream.key].idle) == 0
    await call(gw, "GET", "/")
    assert echo.connections == 2
    await gw.shutdown()


async def test_upstream_connection_close_is_not_reused(gateway: Gateway, echo: EchoServer) -> None:
    echo.keep_alive = False
    await call(gateway, "GET", "/api/1")
    await call(gateway, "GET", "/api/2")
    assert echo.connections == 2


async def test_chunked_upstream_response(gateway: Gateway, echo: EchoServer) -> None:
    echo.chunked = True
    result = await call(gateway, "POST", "/api/x", body=b"z" * 100_000)
    assert result.json()["body"] == "z" * 100_000
    assert result.header("transfer-encoding") is None  # the server re-frames the body
    await call(gateway, "GET", "/api/y")
    assert echo.connections == 1


async def test_head_response_has_no_body_and_keeps_the_connection(
    gateway: Gateway, echo: EchoServer
) -> None:
    result = await call(gateway, "HEAD", "/api/x")
    assert result.status == 200
    assert result.body == b""
    assert int(result.header("content-length") or 0) > 0
    assert (await call(gateway, "GET", "/api/y")).json()["path"] == "/api/y"
    assert echo.connections == 1


async def test_upstream_down_is_502() -> None:
    gw = Gateway([route("down", "/", f"http://127.0.0.1:{free_port()}")])
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(gw, "GET", "/x")
    assert caught.value.status == 502
    assert caught.value.code == "upstream_unavailable"
    assert caught.value.detail == "The upstream could not be reached."


async def test_slow_upstream_is_504(echo: EchoServer) -> None:
    echo.delay = 2.0
    gw = Gateway([route("slow", "/", echo.url, timeout=0.2)])
    started = time.monotonic()
    with pytest.raises(UpstreamTimeoutError) as caught:
        await call(gw, "GET", "/x")
    assert time.monotonic() - started < 1.0
    assert caught.value.status == 504
    assert caught.value.code == "upstream_timeout"
    assert caught.value.detail == "The upstream did not answer in time."
    await gw.shutdown()


async def test_read_timeout_is_504(echo: EchoServer) -> None:
    echo.delay = 2.0
    gw = Gateway([route("slow", "/", echo.url)], client=UpstreamClient(read_timeout=0.2))
    with pytest.raises(UpstreamTimeoutError):
        await call(gw, "GET", "/x")
    await gw.shutdown()


async def test_upstream_dying_mid_response_aborts(gateway: Gateway, echo: EchoServer) -> None:
    echo.truncate = True
    send = Recorder()
    scope = make_scope("POST", "/api/x")
    with pytest.raises(UpstreamAbortedError):
        await gateway(scope, make_receive(b"q" * 10_000), send)
    assert send.messages[0]["type"] == "http.response.start"
    # Never a forged end of body: no body message says more_body=False.
    assert all(m.get("more_body", False) for m in send.messages[1:])


async def test_hop_by_hop_and_connection_named_headers_are_stripped(
    gateway: Gateway, echo: EchoServer
) -> None:
    await call(
        gateway,
        "GET",
        "/api/x",
        headers=[
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
    names = {name for name, _ in echo.received[-1].headers}
    assert names == {
        "host",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }


def test_response_hop_by_hop_headers_are_stripped() -> None:
    raw = [
        (b"Content-Type", b"text/plain"),
        (b"Connection", b"keep-alive, X-Internal"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"X-Internal", b"secret"),
        (b"Proxy-Authenticate", b"Basic"),
        (b"Upgrade", b"h2c"),
        (b"Trailer", b"x"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]
    assert proxy._response_headers(raw) == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


SPOOFED = [
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=1.2.3.4"),
    ("x-real-ip", "1.2.3.4"),
]


async def test_forwarded_headers_from_untrusted_peer_are_replaced(
    gateway: Gateway, echo: EchoServer
) -> None:
    await call(gateway, "GET", "/api/x", headers=SPOOFED, client=("203.0.113.7", 4000))
    got = echo.received[-1]
    assert got.header("x-forwarded-for") == "203.0.113.7"
    assert got.header("x-forwarded-proto") == "http"
    assert got.header("x-forwarded-host") == "gw.test"
    assert got.header("forwarded") is None
    assert got.header("x-real-ip") is None
    assert got.header("host") == f"127.0.0.1:{echo.port}"


async def test_forwarded_headers_from_trusted_proxy_are_appended(echo: EchoServer) -> None:
    gw = Gateway([route("api", "/", echo.url)], trusted_proxies=["10.0.0.0/8", "192.0.2.1"])
    await call(gw, "GET", "/x", headers=SPOOFED, client=("10.1.2.3", 4000), scheme="http")
    got = echo.received[-1]
    assert got.header("x-forwarded-for") == "1.2.3.4, 10.1.2.3"
    assert got.header("x-forwarded-proto") == "https"
    assert got.header("x-forwarded-host") == "evil.example"
    assert got.header("forwarded") is None
    # A trusted proxy that sent no X-Forwarded-For: the peer itself is the client.
    await call(gw, "GET", "/x", client=("192.0.2.1", 4000), scheme="https")
    got = echo.received[-1]
    assert got.header("x-forwarded-for") == "192.0.2.1"
    assert got.header("x-forwarded-proto") == "https"
    # An untrusted peer next to the trusted range.
    await call(gw, "GET", "/x", headers=SPOOFED, client=("11.0.0.1", 4000))
    assert echo.received[-1].header("x-forwarded-for") == "11.0.0.1"
    await gw.shutdown()


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


async def test_override_and_client_ip_headers_from_untrusted_peer_are_stripped(
    gateway: Gateway, echo: EchoServer
) -> None:
    await call(gateway, "GET", "/api/x", headers=OVERRIDES, client=("203.0.113.7", 4000))
    names = {name for name, _ in echo.received[-1].headers}
    assert names == {
        "host",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    }
    assert echo.received[-1].header("x-forwarded-for") == "203.0.113.7"


async def test_trusted_proxy_keeps_its_forwarded_headers_but_never_path_overrides(
    echo: EchoServer,
) -> None:
    gw = Gateway([route("api", "/", echo.url)], trusted_proxies=["10.0.0.0/8"])
    await call(gw, "GET", "/x", headers=OVERRIDES, client=("10.1.2.3", 4000))
    got = echo.received[-1]
    names = {name for name, _ in got.headers}
    assert not names & ALWAYS
    assert got.header("x-forwarded-prefix") == "/evil"
    assert got.header("x-forwarded-port") == "1"
    assert got.header("cf-connecting-ip") == "6.6.6.6"
    assert got.header("x-forwarded-for") == "10.1.2.3"
    await gw.shutdown()


async def test_stale_pooled_connection_is_retried_for_get(
    gateway: Gateway, echo: EchoServer
) -> None:
    echo.drop_after = 1  # every connection answers once, then hangs up on the next request
    await call(gateway, "GET", "/api/1")
    result = await call(gateway, "GET", "/api/2")
    assert result.json()["path"] == "/api/2"
    assert echo.connections == 2
    assert [r.path for r in echo.received] == ["/api/1", "/api/2"]


async def test_stale_pooled_connection_is_not_retried_for_post(
    gateway: Gateway, echo: EchoServer
) -> None:
    echo.drop_after = 1
    await call(gateway, "POST", "/api/1", body=b"a")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(gateway, "POST", "/api/2", body=b"b")
    assert caught.value.detail == "The upstream closed the connection without answering."
    assert echo.connections == 1
    assert [r.path for r in echo.received] == ["/api/1"]


async def test_fresh_connection_closed_without_answer_is_not_retried(echo: EchoServer) -> None:
    echo.drop_after = 0
    gw = Gateway([route("api", "/", echo.url)])
    with pytest.raises(UpstreamUnavailableError):
        await call(gw, "GET", "/x")
    assert echo.connections == 1
    await gw.shutdown()


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            [("content-length", "3"), ("transfer-encoding", "chunked")],
            "The request has both Content-Length and Transfer-Encoding; send only one.",
        ),
        ([("content-length", "abc")], "The request's Content-Length header is malformed."),
        ([("content-length", "-1")], "The request's Content-Length header is malformed."),
        ([("content-length", "+3")], "The request's Content-Length header is malformed."),
        ([("content-length", "1, 1")], "The request's Content-Length header is malformed."),
        (
            [("content-length", "3"), ("content-length", "3")],
            "The request's Content-Length header is malformed.",
        ),
        ([("content-length", "")], "The request's Content-Length header is malformed."),
        ([("transfer-encoding", "gzip, chunked")], "Transfer-Encoding must be exactly 'chunked'."),
        ([("transfer-encoding", "identity")], "Transfer-Encoding must be exactly 'chunked'."),
    ],
)
async def test_bad_framing_is_400(
    gateway: Gateway, echo: EchoServer, headers: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        await call(gateway, "POST", "/api/x", body=b"abc", headers=headers)
    assert caught.value.code == "bad_request_framing"  # the gateway's framing step
    assert caught.value.status == 400
    assert caught.value.detail == message
    assert echo.connections == 0


async def test_body_shorter_than_content_length_is_400(gateway: Gateway) -> None:
    with pytest.raises(BadRequestError, match="does not match its Content-Length"):
        await call(gateway, "POST", "/api/x", body=b"ab", headers=[("content-length", "3")])


async def test_body_size_limit(echo: EchoServer) -> None:
    gw = Gateway([route("api", "/", echo.url)], client=UpstreamClient(max_body_size=10))
    with pytest.raises(RequestTooLargeError) as caught:
        await call(gw, "POST", "/x", body=b"x" * 11, headers=[("content-length", "11")])
    assert caught.value.status == 413
    assert caught.value.detail == "The request body is larger than 10 bytes."
    with pytest.raises(RequestTooLargeError):
        await call(gw, "POST", "/x", chunks=[b"x" * 6, b"x" * 6])
    assert (await call(gw, "POST", "/x", body=b"x" * 10)).json()["body"] == "x" * 10
    await gw.shutdown()


async def test_client_disconnect_during_upload(gateway: Gateway, echo: EchoServer) -> None:
    send = Recorder()
    receive = make_receive(chunks=[b"part"], disconnect=True)
    await gateway(make_scope("POST", "/api/x"), receive, send)
    assert send.messages == []
    await asyncio.sleep(0.05)
    assert len(echo.received) == 0


@pytest.fixture
async def tls_echo(tmp_path: Path) -> AsyncIterator[tuple[EchoServer, Path]]:
    cert, key = ensure_dev_certificate(tmp_path / "tls", hosts=("localhost", "127.0.0.1"))
    server = await start_echo_server(tls=server_ssl_context(cert, key))
    try:
        yield server, cert
    finally:
        await server.close()


async def test_https_upstream_is_verified(tls_echo: tuple[EchoServer, Path]) -> None:
    server, cert = tls_echo
    assert server.url.startswith("https://")
    gw = Gateway([route("tls", "/", server.url)])
    with pytest.raises(UpstreamUnavailableError) as caught:
        await call(gw, "GET", "/x")  # self-signed: not trusted by the default context
    assert caught.value.code == "upstream_tls_error"
    assert caught.value.detail == (
        "The TLS handshake with the upstream failed: its certificate was not accepted "
        "(self-signed certificate)."
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    gw = Gateway([route("tls", "/", server.url)], client=UpstreamClient(ssl_context=trusting))
    for _ in range(3):
        assert (await call(gw, "GET", "/x")).json()["path"] == "/x"
    assert server.connections == 2  # one refused handshake, then one reused connection
    await gw.shutdown()


def test_trusted_proxies_validation() -> None:
    with pytest.raises(ValueError):
        proxy.TrustedProxies(["not-an-ip"])
    trusted = proxy.TrustedProxies(["::1", "10.0.0.0/8", ipaddress.ip_network("192.0.2.0/24")])
    assert "::1" in trusted and "10.9.9.9" in trusted and "192.0.2.77" in trusted
    assert "11.0.0.1" not in trusted and "garbage" not in trusted


async def _raw_upstream(response: bytes) -> tuple[asyncio.Server, str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("chunked_head", [False, True])
async def test_oversized_upstream_response_head_is_502(chunked_head: bool) -> None:
    # A head over MAX_RESPONSE_HEAD_BYTES, in one header or in many small ones.
    if chunked_head:
        fields = b"".join(b"x-filler-%d: %s\r\n" % (i, b"a" * 100) for i in range(800))
    else:
        fields = b"x-big: " + b"a" * (proxy.MAX_RESPONSE_HEAD_BYTES + 10) + b"\r\n"
    server, url = await _raw_upstream(
        b"HTTP/1.1 200 OK\r\n" + fields + b"content-length: 2\r\n\r\nok"
    )
    gw = Gateway([route("big", "/", url)])
    try:
        with pytest.raises(UpstreamUnavailableError) as caught:
            await call(gw, "GET", "/x")
        assert caught.value.status == 502
    finally:
        await gw.shutdown()
        server.close()


async def test_large_body_with_small_head_in_one_packet_is_relayed() -> None:
    # Bytes beyond the head in the same read are body, not head: no false refusal.
    body = b"b" * (proxy.MAX_RESPONSE_HEAD_BYTES * 2)
    server, url = await _raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )
    gw = Gateway([route("big", "/", url)])
    try:
        result = await call(gw, "GET", "/x")
        assert result.status == 200
        assert result.body == body
    finally:
        await gw.shutdown()
        server.close()
