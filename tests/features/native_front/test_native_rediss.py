"""End to end: the native limiter on ``rediss://`` (TLS to Redis), against a real TLS redis-server.

A throw-away ``redis-server`` listens with TLS only (a scratch CA's certificate for
127.0.0.1). A ``bastion serve`` whose shared state is ``rediss://…?ssl_ca_certs=<CA>``
lists its rate-limited route as native, and the native plane (told apart by the request
id's per-plane prefix) admits and refuses (429) with the buckets in that Redis, where
Python's limiter finds them. The native TLS client checks what redis-py checks: a server
certificate from another CA, or one not issued for the host connected to, fails the
connection (the native limiter then defers to Python), and a server that asks for a
client certificate gets the URL's ``ssl_certfile`` / ``ssl_keyfile``.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, EchoThread, free_port, run_cli
from _support.native import plane
from _support.tls import ScratchCA
from bastion import _native
from bastion.storage.shared.resp import native_config

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")

SECTION = json.dumps(
    {
        "rules": [{"per": "ip", "prefix": "tls:ip:", "rate": 5, "period": 60.0, "burst": 5}],
        "store": "redis",
    }
)


class TlsRedis:
    """``redis-server`` with TLS only on a free port; waits until a TLS PING answers."""

    def __init__(self, ca: ScratchCA, cert: Path, key: Path, *, clients: str = "no") -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(ca.cert),
                "--tls-auth-clients",
                clients,
                "--save",
                "",
                "--appendonly",
                "no",
                "--bind",
                "127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ca = ca

    def wait(self, client: tuple[Path, Path] | None = None) -> None:
        context = ssl.create_default_context(cafile=str(self.ca.cert))
        if client is not None:
            context.load_cert_chain(str(client[0]), str(client[1]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
                ):
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.close()
        raise AssertionError("the TLS redis-server did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def ca(tmp_path: Path) -> ScratchCA:
    return ScratchCA.create(tmp_path / "pki")


@pytest.fixture
def redis_tls(ca: ScratchCA) -> Iterator[TlsRedis]:
    cert, key = ca.issue("redis", ("127.0.0.1",))
    server = TlsRedis(ca, cert, key)
    server.wait()
    try:
        yield server
    finally:
        server.close()


def _check(url: str) -> tuple[bool, object]:
    config = native_config(url, key_prefix="t:", connect_timeout=2.0, timeout=2.0)
    assert config is not None, url
    _native.redis_limiter_configure(json.dumps(config))
    try:
        row = _native.redis_limit_check(SECTION, "tls", client_ip="192.0.2.7")
        return bool(row[0]), row
    finally:
        _native.redis_limiter_configure(None)


def test_native_limiter_speaks_tls_and_checks_the_server(
    redis_tls: TlsRedis, ca: ScratchCA, tmp_path: Path
) -> None:
    url = f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={ca.cert}"
    admitted, _ = _check(url)
    assert admitted
    # Another CA: the chain is not trusted (never "connect anyway").
    other = ScratchCA.create(tmp_path / "other", name="another CA")
    with pytest.raises(RuntimeError, match="TLS handshake"):
        _check(f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={other.cert}")
    # The right CA, but the certificate is not for the host connected to.
    with pytest.raises(RuntimeError, match="TLS handshake"):
        _check(f"rediss://localhost:{redis_tls.port}/0?ssl_ca_certs={ca.cert}")
    # Plain RESP to a TLS port is no answer either.
    with pytest.raises(RuntimeError):
        _check(f"redis://127.0.0.1:{redis_tls.port}/0")


def test_native_limiter_presents_the_client_certificate(ca: ScratchCA) -> None:
    cert, key = ca.issue("redis-mtls", ("127.0.0.1",))
    client = ca.issue("bastion-client", client=True)
    server = TlsRedis(ca, cert, key, clients="yes")
    server.wait(client)
    try:
        base = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={ca.cert}"
        with pytest.raises(RuntimeError):
            _check(base)  # no client certificate: the server refuses
        admitted, _ = _check(f"{base}&ssl_certfile={client[0]}&ssl_keyfile={client[1]}")
        assert admitted
    finally:
        server.close()


def test_rediss_limited_route_is_served_natively(
    redis_tls: TlsRedis, ca: ScratchCA, tmp_path: Path, echo: EchoThread
) -> None:
    url = f"rediss://127.0.0.1:{redis_tls.port}/0?ssl_ca_certs={ca.cert}"
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        f"shared: {{url: '{url}', key_prefix: 'tlsnode:'}}\n"
        "routes:\n"
        "  - name: limited\n"
        "    match: {path: /api/limited}\n"
        f"    upstream: {echo.server.url}\n"
        "    public: true\n"
        "    limits: [{per: ip, rate: 3/minute, fail: closed}]\n"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    with (
        BastionProcess("-c", str(config), cwd=tmp_path) as proc,
        httpx.Client(base_url=proc.url, verify=False, timeout=10) as client,
    ):
        python = plane(client.get("/healthz"))
        responses = [client.get("/api/limited/x") for _ in range(5)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
        assert all(plane(r) != python for r in responses), "served natively"
        assert responses[3].json()["reason"] == "rate_limited"
        assert responses[0].headers["ratelimit-policy"] == '"3/minute";q=3;w=60'

    # The bucket lives in the TLS Redis, under the shared key prefix.
    context = ssl.create_default_context(cafile=str(ca.cert))
    with (
        socket.create_connection(("127.0.0.1", redis_tls.port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"KEYS tlsnode:ratelimit:*\r\n")
        reply = sock.recv(4096)
    assert b"tlsnode:ratelimit:limited:ip:" in reply, reply
