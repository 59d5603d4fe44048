"""End to end: request hygiene, size limits and CORS on a real ``bastion serve`` (raw sockets).

The server is the native front, plain HTTP on loopback (``tls: off`` behind a trusted
127.0.0.1), with the demo echo upstream run by the test. What the front itself does is
pinned here too, so a change that loosens it is noticed:

- a malformed or repeated ``Content-Length``, or one with ``Transfer-Encoding``, is 400
  ``bad_request_framing`` without the body being read, and the connection closes after
  the response (RFC 9112 §6.3), so nothing can be smuggled behind it; more header fields
  than ``request_limits.max_headers``, 431 ``headers_too_large``;
- bastion answers everything else with problem+json: 413 ``body_too_large`` (declared and
  streamed), 431 ``headers_too_large`` (header bytes), 400
  ``bad_request_framing`` (other transfer codings), CORS preflights and refusals.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from _support import BastionProcess, EchoThread

APP = "https://app.example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BastionProcess, EchoThread]]:
    tmp: Path = tmp_path_factory.mktemp("edge")
    echo = EchoThread()
    config = tmp / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp}/bastion.db\n"
        f"data_dir: {tmp}/data\n"
        "tls: off\n"
        "trusted_proxies: [127.0.0.1]\n"
        "request_limits: {max_body: 64, max_header_bytes: 8KiB}\n"
        "routes:\n"
        "  - name: upload\n"
        "    match: {path: /upload, methods: [POST]}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        "    max_body: 10\n"
        "  - name: site\n"
        "    match: {path: /, methods: [GET, POST]}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        f"    cors: {{origins: ['{APP}'], credentials: true}}\n"
        "  - name: office\n"
        "    match: {path: /office}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        "    ip: {allow: [10.0.0.0/8]}\n"
    )
    proc = BastionProcess("-c", str(config), cwd=tmp)
    proc.start()
    try:
        yield proc, echo
    finally:
        proc.stop()
        echo.close()


def exchange(proc: BastionProcess, data: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """Send raw bytes; return (status, headers, body, connection closed by the server)."""
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as sock:
        sock.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        sock.settimeout(2)
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return status, headers, rest[:length], closed


def problem(body: bytes) -> dict[str, object]:
    doc: dict[str, object] = orjson.loads(body)
    return doc


def paths(echo: EchoThread) -> list[str]:
    return [r.path for r in echo.server.received]


def test_declared_body_over_route_limit_is_413(server: tuple[BastionProcess, EchoThread]) -> None:
    proc, echo = server
    status, headers, body, _ = exchange(
        proc, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
    )
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert problem(body)["reason"] == "body_too_large"
    assert problem(body)["detail"] == "The request body is larger than 10 bytes."
    assert "/upload" not in paths(echo)


def test_chunked_body_growing_past_the_limit_is_413(
    server: tuple[BastionProcess, EchoThread],
) -> None:
    proc, echo = server
    data = (
        b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n"
    )
    status, _, body, _ = exchange(proc, data)
    assert status == 413
    assert problem(body)["reason"] == "body_too_large"
    assert "/upload" not in paths(echo)
    ok = exchange(proc, b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
    assert ok[0] == 200


def test_default_body_limit(server: tuple[BastionProcess, EchoThread]) -> None:
    proc, _ = server
    status, _, body, _ = exchange(
        proc, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 65\r\n\r\n" + b"x" * 65
    )
    assert status == 413
    assert problem(body)["detail"] == "The request body is larger than 64 bytes."


def test_header_bytes_over_the_limit_is_431(server: tuple[BastionProcess, EchoThread]) -> None:
    proc, _ = server
    status, headers, body, _ = exchange(
        proc, b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    )
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert problem(body)["reason"] == "headers_too_large"
    assert problem(body)["detail"] == "The request headers are larger than 8192 bytes."


def test_too_many_header_fields_is_431_from_the_engine(
    server: tuple[BastionProcess, EchoThread],
) -> None:
    proc, _ = server
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    status, _, body, _ = exchange(proc, b"GET /x HTTP/1.1\r\nHost: a\r\n" + many + b"\r\n")
    # The native front counts every field: Python's 431 problem (its `framing` step's).
    assert status == 431
    assert orjson.loads(body)["reason"] == "headers_too_large"


@pytest.mark.parametrize("value", [b"abc", b"+5", b"5, 5", b"-1"])
def test_malformed_content_length_is_400_from_the_engine(
    server: tuple[BastionProcess, EchoThread], value: bytes
) -> None:
    proc, echo = server
    before = len(echo.server.received)
    status, _, _, closed = exchange(
        proc, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\nhello"
    )
    assert status == 400
    assert closed
    assert len(echo.server.received) == before


def test_other_transfer_codings_are_400_bad_request_framing(
    server: tuple[BastionProcess, EchoThread],
) -> None:
    proc, _ = server
    status, _, body, _ = exchange(
        proc, b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    )
    assert status == 400
    assert problem(body)["reason"] == "bad_request_framing"
    assert problem(body)["detail"] == "Transfer-Encoding must be exactly 'chunked'."


def test_content_length_with_chunked_cannot_smuggle(
    server: tuple[BastionProcess, EchoThread],
) -> None:
    proc, echo = server
    data = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    status, headers, body, closed = exchange(proc, data)
    # Refused (Python's `framing` 400, natively), the body unread, the connection closed.
    assert status == 400
    assert orjson.loads(body)["reason"] == "bad_request_framing"
    assert headers["connection"] == "close"
    assert closed
    assert "/smuggled" not in paths(echo)


def test_method_override_is_not_believed(server: tuple[BastionProcess, EchoThread]) -> None:
    proc, _ = server
    # /upload takes POST only: a GET claiming to be a POST is judged as the GET it is.
    status, headers, body, _ = exchange(
        proc, b"GET /upload HTTP/1.1\r\nHost: a\r\nX-HTTP-Method-Override: POST\r\n\r\n"
    )
    assert status == 405
    assert headers["allow"] == "POST"
    assert problem(body)["reason"] == "method_not_allowed"
    post = httpx.post(f"{proc.url}/x", headers={"X-HTTP-Method-Override": "DELETE"})
    assert post.json()["method"] == "POST"
    assert "x-http-method-override" not in post.json()["headers"]


def test_head_where_get_and_options_where_not_listed(
    server: tuple[BastionProcess, EchoThread],
) -> None:
    proc, _ = server
    head = httpx.head(f"{proc.url}/page")
    assert head.status_code == 200
    assert head.content == b""
    options = httpx.options(f"{proc.url}/page")
    assert options.status_code == 405
    assert options.headers["allow"] == "GET, HEAD, POST"


def test_cors_preflight_and_look_alike_origin(server: tuple[BastionProcess, EchoThread]) -> None:
    proc, echo = server
    before = len(echo.server.received)
    ok = httpx.options(
        f"{proc.url}/page",
        headers={"Origin": APP, "Access-Control-Request-Method": "POST"},
    )
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == APP
    assert ok.headers["access-control-allow-credentials"] == "true"
    evil = httpx.get(f"{proc.url}/page", headers={"Origin": "https://app.example.com.evil.com"})
    assert evil.status_code == 403
    assert evil.json()["reason"] == "cors_origin_not_allowed"
    assert "access-control-allow-origin" not in evil.headers
    assert len(echo.server.received) == before  # neither reached the upstream
    actual = httpx.get(f"{proc.url}/page", headers={"Origin": APP})
    assert actual.headers["access-control-allow-origin"] == APP
    assert actual.headers["vary"] == "Origin"


def test_bastion_endpoints_never_answer_cors(server: tuple[BastionProcess, EchoThread]) -> None:
    proc, _ = server
    for path in ("/oauth2/authorize", "/oauth2/token", "/.well-known/openid-configuration"):
        response = httpx.options(
            f"{proc.url}{path}", headers={"Origin": APP, "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in response.headers, path
        assert response.status_code in (404, 405), path
