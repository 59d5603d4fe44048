"""Verified TLS to https upstreams: a private CA per route, SNI / host name, upstream mTLS.

One ``bastion serve`` for the module; its routes reach https echo upstreams whose
certificates a scratch CA issued (one of them demands a client certificate), with and
without the route's ``upstream_ca`` and client certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from _support import EchoThread, free_port, run_cli
from _support.gateway_server import GatewayServer, fresh_echo, route, serve_gateway
from _support.tls import ScratchCA
from bastion.crypto.tls import server_ssl_context


@dataclass
class Upstreams:
    ca: ScratchCA
    plain: EchoThread  # a certificate for "localhost" the CA issued
    mtls: EchoThread  # the same, and it requires a client certificate the CA issued
    client_cert: Path
    client_key: Path


def by_name(echo: EchoThread, host: str = "localhost") -> str:
    return f"https://{host}:{echo.server.port}"


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    ca = ScratchCA.create(tmp_path_factory.mktemp("ca"))
    cert, key = ca.issue("upstream", ("localhost",))
    plain = EchoThread(tls=server_ssl_context(cert, key))
    cert, key = ca.issue("mtls-upstream", ("localhost",))
    context = server_ssl_context(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca.cert))
    mtls = EchoThread(tls=context)
    client_cert, client_key = ca.issue("bastion-client", client=True)
    try:
        yield Upstreams(ca, plain, mtls, client_cert, client_key)
    finally:
        plain.close()
        mtls.close()


@pytest.fixture(scope="module")
def served(
    upstreams: Upstreams, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    u = upstreams
    text = "".join(
        [
            route("ca", by_name(u.plain), upstream_ca=u.ca.cert),
            route("noca", by_name(u.plain)),
            route("byip", by_name(u.plain, "127.0.0.1"), upstream_ca=u.ca.cert),
            route(
                "mtls",
                by_name(u.mtls),
                upstream_ca=u.ca.cert,
                upstream_client_cert=u.client_cert,
                upstream_client_key=u.client_key,
            ),
            route("nocert", by_name(u.mtls), upstream_ca=u.ca.cert),
        ]
    )
    directory = tmp_path_factory.mktemp("upstream-tls")
    with serve_gateway(directory, text, "tls: off\ntrusted_proxies: [192.0.2.1]\n") as server:
        yield server


@pytest.fixture
def gateway(served: GatewayServer, upstreams: Upstreams) -> Iterator[httpx.Client]:
    fresh_echo(upstreams.plain)
    fresh_echo(upstreams.mtls)
    with served.client() as client:
        yield client


def _problem(response: httpx.Response) -> tuple[int, str, str]:
    doc = response.json()
    assert doc["status"] == response.status_code
    return response.status_code, doc["reason"], doc["detail"]


# Python's detail named OpenSSL's verify message ("… its certificate was not accepted
# (unable to get local issuer certificate)."); the native client says the handshake failed.
TLS_FAILED = "The TLS handshake with the upstream failed."


def test_verified_with_the_route_ca(gateway: httpx.Client, upstreams: Upstreams) -> None:
    result = gateway.get("/ca/x")
    assert result.status_code == 200 and result.json()["path"] == "/ca/x"
    port = upstreams.plain.server.port
    assert upstreams.plain.server.received[-1].header("host") == f"localhost:{port}"


def test_refused_without_the_ca(gateway: httpx.Client, upstreams: Upstreams) -> None:
    # system CAs do not know the test CA
    assert _problem(gateway.get("/noca/x")) == (502, "upstream_tls_error", TLS_FAILED)
    assert len(upstreams.plain.server.received) == 0


def test_refused_for_a_wrong_host_name(gateway: httpx.Client, upstreams: Upstreams) -> None:
    # The certificate names "localhost"; connecting by IP must not pass.
    assert _problem(gateway.get("/byip/x")) == (502, "upstream_tls_error", TLS_FAILED)
    assert len(upstreams.plain.server.received) == 0


def test_upstream_mtls_client_certificate(gateway: httpx.Client, upstreams: Upstreams) -> None:
    assert gateway.get("/mtls/m").status_code == 200
    status, reason, detail = _problem(gateway.get("/nocert/m"))
    # TLS 1.3: the server checks the client certificate after the client's handshake
    # finished, so the refusal arrives as a closed connection.
    assert (status, reason) == (502, "upstream_unavailable")
    assert detail == "The upstream closed the connection without answering."
    assert len(upstreams.mtls.server.received) == 1


def test_unusable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\ntls: off\ntrusted_proxies: [192.0.2.1]\n"
        "routes:\n" + route("tls", "https://localhost:1", path="/", upstream_ca=bad)
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    served = run_cli("serve", "-c", str(config), "--json", "--port", str(free_port()), cwd=tmp_path)
    assert served.returncode != 0  # refused at start-up, never per request
    output = served.stdout + served.stderr
    refusal = orjson.loads(output[output.index('{\n  "error"') :])
    assert refusal["error"] == "gateway_config_invalid"
    assert refusal["detail"].startswith(
        f"routes[tls].upstream_ca {bad} is not a usable PEM CA bundle ("
    )
