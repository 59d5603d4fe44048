"""End to end: the native front (``server.engine: native``, the default) in front of Python.

- the front's ``x-bastion-front-*`` headers cannot be set from outside: spoofed ones are
  dropped before the hop, never reach Python's scope nor an upstream;
- HTTP/2 over TLS (ALPN) is served, and reaches Python as HTTP/1.1;
- with the Python app unreachable the front answers 503 problem+json
  ``control_plane_unavailable`` itself, and drains on stop.

Client certificates: tests/features/mtls (both engines); graceful drain of an in-flight
request: tests/http/test_http_server.py (all engines).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import orjson
import pytest

from _support import BastionProcess
from bastion._native import Front

SPOOFED = {
    "X-Bastion-Front-Peer": "203.0.113.9:4444",
    "X-Bastion-Front-Scheme": "http",
    "X-Bastion-Front-Method": "DELETE",
    "X-Bastion-Front-Client-Cert": "-----BEGIN%20CERTIFICATE-----",
    "X-Bastion-Front-Anything": "x",
}


def test_front_headers_cannot_be_spoofed(tmp_path: Path) -> None:
    with (
        BastionProcess("--demo", cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        echoed = client.get("/demo/hello", headers=SPOOFED)
        assert echoed.status_code == 200, echoed.text
        body = echoed.json()
        assert body["method"] == "GET"
        seen = {name.lower(): value for name, value in body["headers"].items()}
        assert [name for name in seen if name.startswith("x-bastion-front-")] == []
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "https"
        health = client.get("/healthz", headers=SPOOFED)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_http2_over_tls(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (httpx has no h2 package here)")
    with BastionProcess("--demo", cwd=tmp_path) as proc:
        out = subprocess.run(
            [
                curl,
                "-sk",
                "--http2",
                "-w",
                "\n%{http_version} %{http_code}",
                "-d",
                "ping",
                f"{proc.url}/demo/hello?x=1",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        document, status = out.rsplit("\n", 1)
        assert status == "2 200"
        echoed = json.loads(document)
        assert (echoed["path"], echoed["query"], echoed["body"]) == ("/demo/hello", "x=1", "ping")
        health = subprocess.run(
            [curl, "-sk", "--http2", "-w", "\n%{http_version} %{http_code}", f"{proc.url}/healthz"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        assert health == '{"status":"ok"}\n2 200'


def test_python_unreachable_is_a_503_problem(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    config = {"threads": 1, "upstream_socket": str(tmp_path / "absent.sock")}
    front = Front(orjson.dumps(config).decode())
    front.start(sock.detach())
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/healthz", headers={"X-Request-Id": "t-1"}, timeout=10
        )
    finally:
        assert front.stop(1.0) is True
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "type": "urn:bastion:problem:control_plane_unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "the control plane is not reachable; retry shortly",
        "reason": "control_plane_unavailable",
        "request_id": "t-1",
    }
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_a_bad_configuration_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        Front("{}")
    assert str(info.value) == (
        "native front configuration: missing field `upstream_socket` at line 1 column 2"
    )
