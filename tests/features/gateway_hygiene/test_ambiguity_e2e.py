"""End to end (issue 13): request ambiguities through a real ``bastion serve``.

Each test writes requests byte for byte over plain HTTP (``tls: off`` behind a trusted proxy that
is not the test client), with a recording echo upstream:

- ``..;`` path parameters (``/raw/..;/api/x``, ``%2e%2e;``) are 400 ``invalid_path``, never
  matched against the public ``/raw`` route nor forwarded (Tomcat would read ``..``);
- a method that is not upper case (``delete``) is 400 ``invalid_method`` before matching,
  so it cannot slip past per-method scopes;
- two ``Host`` headers, or none in HTTP/1.1, are 400 (RFC 9112 §3.2);
- path-override, client-IP and proxy-identity headers from an untrusted client never
  reach the upstream;
- a malformed chunked body on ``/oauth2/token`` or ``/api-keys/leaks`` is a 400 (or a
  closed connection), never a 500, and logs nothing at error level.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _support import BastionProcess, EchoThread, run_cli


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


def _config(cwd: Path, echo: EchoThread) -> None:
    (cwd / "bastion.yaml").write_text(
        "tls: off\n"
        "trusted_proxies: [192.0.2.1]\n"  # not the test client: it is an untrusted peer
        "api_keys: {leak_report_secret: 0123456789abcdef0123456789abcdef}\n"
        "routes:\n"
        "  - name: api\n"
        "    match: {path: /api}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [api_key]\n"
        "    scopes: {DELETE: [api:write], '*': [api:read]}\n"
        "  - name: raw\n"
        "    match: {path: /raw}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, echo: EchoThread) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("ambiguity")
    _config(cwd, echo)
    proc = BastionProcess("-c", "bastion.yaml", cwd=cwd).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def reader_key(server: BastionProcess) -> str:
    assert server.cwd is not None
    result = run_cli(
        "keys", "create", "r", "--scope", "api:read", "--json", "-c", "bastion.yaml", cwd=server.cwd
    )
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["key"])


def raw(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line + headers, no final blank line) and read the response.

    Returns status 0 when the server closed the connection without a response.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = head.replace("\n", "\r\n")
        if "connection:" not in head.lower():
            request += "\r\nConnection: close"
        sock.sendall(request.encode("latin-1") + b"\r\n\r\n" + body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    if not data:
        return 0, {}, b""
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, payload


def _reason(body: bytes) -> Any:
    return json.loads(body)["reason"]


@pytest.mark.parametrize(
    "target",
    ["/raw/..;/api/key/x", "/raw/..;jsessionid=x/api/x", "/raw/%2e%2e;/api/x", "/raw/.%2E;/api/x"],
)
def test_dot_segment_path_parameters_are_refused(
    server: BastionProcess, echo: EchoThread, target: str
) -> None:
    before = len(echo.server.received)
    status, _, body = raw(server.port, f"GET {target} HTTP/1.1\nHost: localhost")
    assert status == 400, body
    assert _reason(body) == "invalid_path"
    assert len(echo.server.received) == before


def test_lower_case_method_cannot_bypass_per_method_scopes(
    server: BastionProcess, echo: EchoThread, reader_key: str
) -> None:
    before = len(echo.server.received)
    auth = f"Authorization: Bearer {reader_key}"
    status, _, body = raw(server.port, f"DELETE /api/x HTTP/1.1\nHost: localhost\n{auth}")
    assert (status, _reason(body)) == (403, "insufficient_scope")
    for method in ("delete", "Delete"):
        status, _, body = raw(server.port, f"{method} /api/x HTTP/1.1\nHost: localhost\n{auth}")
        assert status == 400, body
        assert _reason(body) == "invalid_method"
    assert len(echo.server.received) == before
    status, _, body = raw(server.port, f"GET /api/x HTTP/1.1\nHost: localhost\n{auth}")
    assert status == 200, body


def test_two_host_headers_are_refused(server: BastionProcess, echo: EchoThread) -> None:
    before = len(echo.server.received)
    status, _, body = raw(
        server.port, "GET /raw/x HTTP/1.1\nHost: localhost\nHost: internal.example"
    )
    assert status == 400, body
    assert _reason(body) == "invalid_host"
    assert len(echo.server.received) == before


def test_http_1_1_without_host_is_refused(server: BastionProcess, echo: EchoThread) -> None:
    before = len(echo.server.received)
    status, _, body = raw(server.port, "GET /raw/x HTTP/1.1")
    assert status == 400, body
    if body:  # the engine may refuse it itself, with its own body
        assert _reason(body) == "invalid_host"
    assert len(echo.server.received) == before
    # HTTP/1.0 has no Host requirement.
    status, _, body = raw(server.port, "GET /raw/x HTTP/1.0")
    assert status == 200, body


SPOOFED = (
    "X-Original-URL: /admin\nX-Rewrite-URL: /admin\nX-Forwarded-Prefix: /evil\n"
    "X-Forwarded-Port: 1\nX-Forwarded-Server: evil\nTrue-Client-IP: 6.6.6.6\n"
    "X-Client-IP: 6.6.6.6\nCF-Connecting-IP: 6.6.6.6\nX-Forwarded-Email: a@example.com\n"
    "X-Forwarded-Groups: admins\nX-Forwarded-For: 6.6.6.6\nX-Kept: yes"
)


def test_override_and_client_ip_headers_never_reach_the_upstream(
    server: BastionProcess, echo: EchoThread
) -> None:
    status, _, body = raw(server.port, f"GET /raw/x HTTP/1.1\nHost: localhost\n{SPOOFED}")
    assert status == 200, body
    seen = echo.server.received[-1]
    names = {name.lower() for name, _ in seen.headers}
    assert names == {
        "host",
        "x-kept",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-bastion-request-id",
    }, names
    assert seen.header("x-forwarded-for") == "127.0.0.1"


def test_malformed_chunked_body_is_a_400_without_an_error_log(
    tmp_path: Path, echo: EchoThread
) -> None:
    _config(tmp_path, echo)
    proc = BastionProcess("-c", "bastion.yaml", cwd=tmp_path).start()
    try:
        for path in ("/oauth2/token", "/api-keys/leaks"):
            for chunks in (b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nabc\r\n0\r\n\r\n"):
                status, _, body = raw(
                    proc.port,
                    f"POST {path} HTTP/1.1\nHost: localhost\n"
                    "Content-Type: application/x-www-form-urlencoded\n"
                    "Transfer-Encoding: chunked",
                    chunks,
                )
                assert status in (0, 400), (path, chunks, status, body)
                if status == 400 and body.startswith(b"{"):
                    assert _reason(body) == "bad_request_body"
    finally:
        proc.stop()
    records = [line for line in proc.stderr.splitlines() if line.startswith("{")]
    levels = [json.loads(line)["level"] for line in records]
    assert "error" not in levels, proc.stderr
    assert "Traceback" not in proc.stderr
