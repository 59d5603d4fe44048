"""End to end: the native front's lean HTTP/1.1 loop (``native/src/h1.rs``) over raw sockets.

The loop serves plainly safe HTTP/1.x requests itself and hands everything else, with the bytes
already read, to hyper for the rest of the connection. What a client sees must not change:

- keep-alive and pipelined requests are answered in order, each with exactly one ``date``;
  a request whose head and body arrive a few bytes at a time is read whole;
- request smuggling attempts (``Content-Length`` with ``Transfer-Encoding``, two or odd
  lengths, whitespace before the colon, obs-fold, bare CR, NUL) never reach the upstream as a
  second request; malformed heads get hyper's bare 400 / 431 as before;
- what the loop hands over still works: a chunked request body (also after requests the loop
  served on the same connection), ``Expect: 100-continue``, h2c prior knowledge;
- a client that disconnects mid-body does not disturb the next connections.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import orjson
import pytest

from _support import BastionProcess, EchoThread


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BastionProcess, EchoThread]]:
    """One ``bastion serve`` (native front, plain HTTP) with a public route to an echo upstream."""
    upstream = EchoThread()
    try:
        cwd = tmp_path_factory.mktemp("native-h1")
        (cwd / "bastion.yaml").write_text(
            "tls: off\n"
            "trusted_proxies: [192.0.2.1]\n"  # not the test client
            "routes:\n"
            "  - name: raw\n"
            "    match: {path: /raw}\n"
            f"    upstream: {upstream.server.url}\n"
            "    public: true\n"
        )
        proc = BastionProcess("-c", "bastion.yaml", cwd=cwd).start()
        try:
            yield proc, upstream
        finally:
            proc.stop()
    finally:
        upstream.close()


@pytest.fixture
def server(front: tuple[BastionProcess, EchoThread]) -> BastionProcess:
    return front[0]


@pytest.fixture
def echo(front: tuple[BastionProcess, EchoThread]) -> EchoThread:
    return front[1]


Response = tuple[int, list[tuple[str, str]], bytes]


def _read_responses(data: bytes) -> list[Response]:
    """Split what a server wrote into responses (content-length or chunked framing)."""
    out: list[Response] = []
    while data:
        head, sep, data = data.partition(b"\r\n\r\n")
        assert sep, f"truncated head: {head!r}"
        lines = head.decode("latin-1").split("\r\n")
        headers = [
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]
        values = dict(headers)
        if "content-length" in values:
            size = int(values["content-length"])
            body, data = data[:size], data[size:]
        elif values.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line, 16)
                body, data = body + data[:size], data[size + 2 :]
                if size == 0:
                    break
        else:
            body, data = data, b""
        out.append((int(lines[0].split()[1]), headers, body))
    return out


def _exchange(port: int, payload: bytes | list[bytes], pause: float = 0.0) -> bytes:
    """Send ``payload`` (pieces sent apart when a list) and read until the server closes."""
    pieces = payload if isinstance(payload, list) else [payload]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for piece in pieces:
            sock.sendall(piece)
            if pause:
                time.sleep(pause)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return data


def _received_paths(echo: EchoThread) -> list[str]:
    return [request.path for request in echo.server.received]


def test_pipelined_requests_are_answered_in_order_with_one_date(
    server: BastionProcess, echo: EchoThread
) -> None:
    payload = (
        b"GET /raw/one HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"POST /raw/two HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /raw/three HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    responses = _read_responses(_exchange(server.port, payload))
    assert [status for status, _, _ in responses] == [200, 200, 200]
    for _, headers, _ in responses:
        assert [name for name, _ in headers].count("date") == 1
    documents = [orjson.loads(body) for _, _, body in responses]
    assert [(d["method"], d["path"]) for d in documents] == [
        ("GET", "/raw/one"),
        ("POST", "/raw/two"),
        ("GET", "/raw/three"),
    ]
    assert echo.server.received[-2].body == b"hello"
    assert ("connection", "close") in responses[2][1]


def test_a_request_arriving_a_few_bytes_at_a_time_is_read_whole(
    server: BastionProcess, echo: EchoThread
) -> None:
    request = (
        b"POST /raw/slow?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n"
        b"Connection: close\r\n\r\nhello world"
    )
    pieces = [request[i : i + 7] for i in range(0, len(request), 7)]
    [(status, _, body)] = _read_responses(_exchange(server.port, pieces, pause=0.01))
    assert status == 200, body
    assert orjson.loads(body)["path"] == "/raw/slow"
    assert echo.server.received[-1].body == b"hello world"


SMUGGLED = b"GET /raw/smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        # Content-Length and chunked: chunked wins (hyper), the "body" is not a request.
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
        b"Content-Length: 6\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: +5\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5, 6\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nContent-Length : 5\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nContent-Length:\r\n 5\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\rContent-Length: 5\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\n",
        b"POST /raw/a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_smuggling_attempts_never_reach_the_upstream_as_a_request(
    server: BastionProcess, echo: EchoThread, head: bytes
) -> None:
    data = _exchange(server.port, head + SMUGGLED)
    assert "/raw/smuggled" not in _received_paths(echo)
    statuses = [int(line.split()[1]) for line in data.split(b"\r\n") if line.startswith(b"HTTP/1.")]
    # Refused (400, or closed without an answer), or served once as one request; never two.
    assert statuses in ([], [400], [200]), data


def test_malformed_heads_get_hypers_bare_answers(server: BastionProcess) -> None:
    # (Header fields httparse cannot read are the front's 400 problem: test_native_framing.py.)
    cases = {
        b"G@T /raw/a HTTP/1.1\r\nHost: localhost\r\n\r\n": 400,
        b"GET /raw/a HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n": 431,
    }
    for request, status in cases.items():
        data = _exchange(server.port, request)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        reason = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}[status]
        assert lines[0] == b"HTTP/1.1 %d %s" % (status, reason), request[:80]
        assert lines[1:3] == [b"connection: close", b"content-length: 0"]
        assert lines[3].startswith(b"date: ") and len(lines) == 4
        assert body == b""
    # More fields than request_limits.max_headers: Python's 431 from the native gateway
    # (test_native_framing.py); on a control-plane path, the bare 431 above.
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(101))
    data = _exchange(server.port, b"GET /raw/a HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
    assert data.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), data[:200]
    assert b'"reason":"headers_too_large"' in data
    data = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[:3] == [
        b"HTTP/1.1 431 Request Header Fields Too Large",
        b"connection: close",
        b"content-length: 0",
    ]
    assert body == b""


def test_what_the_loop_hands_over_still_works_on_the_same_connection(
    server: BastionProcess, echo: EchoThread
) -> None:
    payload = (
        b"GET /raw/first HTTP/1.1\r\nHost: localhost\r\n\r\n"
        b"POST /raw/chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
        b"GET /raw/after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    responses = _read_responses(_exchange(server.port, payload))
    assert [status for status, _, _ in responses] == [200, 200, 200]
    assert [orjson.loads(body)["path"] for _, _, body in responses] == [
        "/raw/first",
        "/raw/chunked",
        "/raw/after",
    ]
    assert echo.server.received[-2].body == b"hello"


def test_expect_100_continue_is_answered_by_hyper(server: BastionProcess, echo: EchoThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /raw/expect HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        sock.sendall(b"ok")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    [(status, _, body)] = _read_responses(data)
    assert status == 200, body
    assert echo.server.received[-1].body == b"ok"


def test_a_client_leaving_mid_body_does_not_disturb_the_next(
    server: BastionProcess, echo: EchoThread
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /raw/cut HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc")
    request = b"GET /raw/next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    [(status, _, body)] = _read_responses(_exchange(server.port, request))
    assert status == 200, body
    assert orjson.loads(body)["path"] == "/raw/next"
    assert [r.body for r in echo.server.received if r.path == "/raw/cut"] in ([], [b"abc"])


def test_h2c_prior_knowledge_still_reaches_hyper(server: BastionProcess) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    out = subprocess.run(
        [
            curl,
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            f"http://127.0.0.1:{server.port}/raw/h2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.stdout == "2 200", out


def test_http_10_keep_alive(server: BastionProcess) -> None:
    payload = (
        b"GET /raw/a HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n"
        b"GET /raw/b HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    data = _exchange(server.port, payload)
    responses = _read_responses(data)
    assert [status for status, _, _ in responses] == [200, 200]
    assert data.startswith(b"HTTP/1.0 200 OK\r\n")
    assert ("connection", "keep-alive") in responses[0][1]
    assert ("connection", "keep-alive") not in responses[1][1]
