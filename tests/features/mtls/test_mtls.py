"""End to end: client certificates over real TLS on ``auth: [mtls]``.

The native front asks for a certificate and verifies it against ``tls.client_ca``
in the handshake, and the gateway reads it: the upstream
sees the certificate's URI SAN as the subject. No certificate: 401. A
certificate from another CA: the handshake fails.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support import BastionProcess, EchoThread
from gateway.certs_support import TestCA, client_sans, server_sans, write_pair


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = TestCA()
    rogue = TestCA("rogue CA")
    server_cert, server_key = write_pair(
        *ca.issue("localhost", server_sans(), server=True), directory, "server"
    )
    client_cert, client_key = write_pair(
        *ca.issue("svc", client_sans("spiffe://test/orders"), server=False), directory, "client"
    )
    rogue_cert, rogue_key = write_pair(
        *rogue.issue("svc", client_sans("spiffe://test/orders"), server=False),
        directory,
        "rogue",
    )
    return {
        "ca": ca.write_ca(directory / "ca.pem"),
        "server_cert": server_cert,
        "server_key": server_key,
        "client_cert": client_cert,
        "client_key": client_key,
        "rogue_cert": rogue_cert,
        "rogue_key": rogue_key,
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    echo: EchoThread,
    pki: dict[str, Path],
) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("mtls")
    (cwd / "bastion.yaml").write_text(
        f"tls: {{mode: files, cert: '{pki['server_cert']}', key: '{pki['server_key']}', "
        f"client_ca: '{pki['ca']}'}}\n"
        "routes:\n"
        "  - name: certs\n"
        "    match: {path: /certs}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [mtls]\n"
        "    claims: {sub: 'spiffe://test/orders'}\n"
    )
    proc = BastionProcess("-c", "bastion.yaml", cwd=cwd).start()
    try:
        yield proc
    finally:
        proc.stop()


def _context(pki: dict[str, Path], name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if name is not None:
        context.load_cert_chain(str(pki[f"{name}_cert"]), str(pki[f"{name}_key"]))
    return context


def test_client_certificate_authenticates(server: BastionProcess, pki: dict[str, Path]) -> None:
    url = f"https://127.0.0.1:{server.port}"
    with httpx.Client(base_url=url, verify=_context(pki, "client"), timeout=10) as http:
        ok = http.get("/certs/1", headers={"X-Bastion-Subject": "spoofed"})
        assert ok.status_code == 200, ok.text
        seen = {k.lower(): v for k, v in ok.json()["headers"].items()}
        assert seen["x-bastion-subject"] == "spiffe://test/orders"
    with httpx.Client(base_url=url, verify=_context(pki, None), timeout=10) as http:
        denied = http.get("/certs/1")
        assert denied.status_code == 401
        assert denied.json()["reason"] == "unauthenticated"
        # Other endpoints keep working without a certificate (CERT_OPTIONAL).
        assert http.get("/oauth2/jwks.json").status_code == 200
    with (
        httpx.Client(base_url=url, verify=_context(pki, "rogue"), timeout=10) as http,
        pytest.raises(httpx.HTTPError),
    ):
        http.get("/certs/1")
