"""End to end: ``auth: [mtls]`` routes are served by the native plane over real TLS.

A real ``bastion serve`` (native engine) asks for client certificates and verifies them
against ``tls.client_ca``; the routes that take ``mtls`` are compiled native. The identity
of a certificate is derived by Python once (the native core has no X.509 parser: the first
request of a certificate asks Python for it, a lookup, and goes on natively), pushed into
the native cache by the certificate's SHA-256 thumbprint, and every request with that
certificate is served natively — told apart by the request id's per-plane prefix — with
the identity upstream that Python's pipeline sent (its answers, recorded, are in
``tests/vectors/twins/test_mtls_native.json``):

- the subject is the first URI SAN (SPIFFE), else the first DNS / e-mail SAN, else the
  RFC 4514 subject; the upstream sees exactly the headers Python sent (spoofed identity
  headers stripped);
- no certificate: 401 ``unauthenticated`` (Python's, rendered natively); a certificate of
  another CA: the handshake fails; a route whose ``claims`` the certificate does not meet: 403
  ``claim_mismatch`` however often it is asked (never allowed; rendered natively alike);
- concurrent first requests of a new certificate cost one derivation (one lookup), and
  every one is served natively;
- with ``auth: [mtls, api_key]`` the certificate vouches first (a bogus key beside it is
  ignored, as in Python); without a certificate the key is judged (401 ``invalid_api_key``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from _support import BastionProcess, EchoThread
from _support.native import native_lookups, plane
from _support.recorded import Recorded
from gateway.certs_support import TestCA, client_sans, server_sans, write_pair

#: Python's answers to this module's requests; in them ``ECHO`` is the upstream's authority
#: and ``GATEWAY`` bastion's (both differ from run to run).
ANSWERS = Recorded(__name__)


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki-native")
    ca = TestCA()
    rogue = TestCA("rogue CA")
    out = {"ca": ca.write_ca(directory / "ca.pem")}
    issued = {
        "server": (ca, "localhost", server_sans(), True),
        "spiffe": (ca, "svc", client_sans("spiffe://test/orders"), False),
        "dns": (
            ca,
            "web",
            [x509.RFC822Name("ops@example.com"), x509.DNSName("web.example.com")],
            False,
        ),
        "plain": (ca, "plain", [], False),
        "burst": (ca, "burst", client_sans("spiffe://test/burst"), False),
        "rogue": (rogue, "svc", client_sans("spiffe://test/orders"), False),
    }
    for name, (authority, cn, sans, server) in issued.items():
        cert, key = write_pair(*authority.issue(cn, sans, server=server), directory, name)
        out[f"{name}_cert"], out[f"{name}_key"] = cert, key
    return out


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, echo: EchoThread, pki: dict[str, Path]
) -> Iterator[tuple[BastionProcess, Path]]:
    cwd = tmp_path_factory.mktemp("mtls-native")
    up = echo.server.url
    config = cwd / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{cwd}/bastion.db\n"
        f"tls: {{mode: files, cert: '{pki['server_cert']}', key: '{pki['server_key']}', "
        f"client_ca: '{pki['ca']}'}}\n"
        "routes:\n"
        "  - name: certs\n"
        "    match: {path: /certs}\n"
        f"    upstream: {up}\n"
        "    auth: [mtls]\n"
        "    claims: {sub: 'spiffe://test/orders'}\n"
        "  - name: any\n"
        "    match: {path: /any}\n"
        f"    upstream: {up}\n"
        "    auth: [mtls]\n"
        "  - name: mixed\n"
        "    match: {path: /mixed}\n"
        f"    upstream: {up}\n"
        "    auth: [mtls, api_key]\n"
    )
    proc = BastionProcess("-c", str(config), cwd=cwd).start()
    try:
        yield proc, config
    finally:
        proc.stop()


def _client(proc: BastionProcess, pki: dict[str, Path], name: str | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if name is not None:
        context.load_cert_chain(str(pki[f"{name}_cert"]), str(pki[f"{name}_key"]))
    return httpx.Client(base_url=f"https://127.0.0.1:{proc.port}", verify=context, timeout=10)


def _python_plane(http: httpx.Client) -> str:
    response = http.get("/healthz")
    assert response.status_code == 200
    return plane(response)


def _upstream_saw(response: httpx.Response) -> dict[str, str]:
    """The identity-bearing headers the upstream received (not the per-request ones)."""
    headers = {k.lower(): v for k, v in response.json()["headers"].items()}
    return {k: v for k, v in headers.items() if k not in ("x-bastion-request-id", "content-length")}


@pytest.mark.parametrize(
    ("cert", "path", "subject"),
    [
        ("spiffe", "/certs/1", "spiffe://test/orders"),
        ("dns", "/any/1", "web.example.com"),  # no URI SAN: the first DNS SAN
        ("plain", "/any/1", "CN=plain"),  # no SAN: the RFC 4514 subject
    ],
)
def test_python_derives_once_and_every_request_is_native_alike(
    server: tuple[BastionProcess, Path],
    echo: EchoThread,
    pki: dict[str, Path],
    cert: str,
    path: str,
    subject: str,
) -> None:
    proc, _ = server
    with _client(proc, pki, cert) as http:
        python = _python_plane(http)
        spoof = {"X-Bastion-Subject": "spoofed", "X-Bastion-Key-Id": "k"}
        before = native_lookups(http)
        first, second, third = (http.get(path, headers=spoof) for _ in range(3))
        after = native_lookups(http)
    for response in (first, second, third):
        assert response.status_code == 200, response.text
        seen = _upstream_saw(response)
        assert seen["x-bastion-subject"] == subject
        assert "x-bastion-key-id" not in seen
    # Each case has its own certificate: its first request is a native miss, looked up.
    assert plane(first) == plane(second) == plane(third) != python
    assert after[("cert", "found")] == before.get(("cert", "found"), 0) + 1
    # The upstream sees the identity headers Python's pipeline sent.
    authorities = {
        echo.server.url.partition("://")[2]: "ECHO",
        f"127.0.0.1:{proc.port}": "GATEWAY",
    }
    seen = {k: authorities.get(v, v) for k, v in _upstream_saw(first).items()}
    assert seen == ANSWERS[f"upstream saw {cert}"]


def test_refusals(server: tuple[BastionProcess, Path], pki: dict[str, Path]) -> None:
    proc, _ = server
    with _client(proc, pki, None) as http:
        python = _python_plane(http)
        # No certificate (and nothing else): Python's 401, rendered natively, byte for byte.
        for _ in range(2):
            denied = http.get("/certs/1")
            assert denied.status_code == 401
            assert denied.json()["reason"] == "unauthenticated"
            assert denied.headers["www-authenticate"] == 'Bearer realm="bastion"'
            assert plane(denied) != python
            ANSWERS.check("unauthenticated", denied)
    # A certificate whose identity the route's claims refuse: Python's 403, every time.
    with _client(proc, pki, "plain") as http:
        refused = [http.get("/certs/1") for _ in range(2)]
    assert plane(refused[0]) != python and plane(refused[1]) != python
    for response in refused:
        assert response.status_code == 403
        assert response.json()["reason"] == "claim_mismatch"
        ANSWERS.check("claim_mismatch", response)
    # Another CA's certificate never gets past the handshake.
    with _client(proc, pki, "rogue") as http, pytest.raises(httpx.HTTPError):
        http.get("/certs/1")


def test_mtls_first_then_api_key(server: tuple[BastionProcess, Path], pki: dict[str, Path]) -> None:
    proc, _ = server
    bogus = {"Authorization": "Bearer bst_live_0123456789abcdefghijABCDEFGHIJ0a1b2c"}
    with _client(proc, pki, "spiffe") as http:
        python = _python_plane(http)
        responses = [http.get("/mixed/1", headers=bogus) for _ in range(3)]
    for response in responses:
        assert response.status_code == 200, response.text
        seen = _upstream_saw(response)
        assert seen["x-bastion-subject"] == "spiffe://test/orders"
        # mtls vouched: the key was not the credential, so it is not consumed either.
        assert seen["authorization"] == bogus["Authorization"]
    assert plane(responses[-1]) != python
    with _client(proc, pki, None) as http:
        no_cert = http.get("/mixed/1", headers=bogus)
    assert no_cert.status_code == 401
    assert no_cert.json()["reason"] == "invalid_api_key"


def test_concurrent_first_requests_of_a_certificate_cost_one_derivation(
    server: tuple[BastionProcess, Path], pki: dict[str, Path]
) -> None:
    proc, _ = server
    count = 16
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    context.load_cert_chain(str(pki["burst_cert"]), str(pki["burst_key"]))
    url = f"https://127.0.0.1:{proc.port}"

    async def burst() -> tuple[str, list[httpx.Response]]:
        clients = [httpx.AsyncClient(base_url=url, verify=context, timeout=10) for _ in range(16)]
        try:
            # Open every connection first (Python's health check), so the requests arrive
            # together.
            opened = await asyncio.gather(*(c.get("/healthz") for c in clients))
            responses = await asyncio.gather(*(c.get(f"/any/{n}") for n, c in enumerate(clients)))
            return plane(opened[0]), list(responses)
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    with httpx.Client(base_url=url, verify=context, timeout=10) as http:
        before = native_lookups(http)
        python, responses = asyncio.run(burst())
        after = native_lookups(http)
    assert [r.status_code for r in responses] == [200] * count
    assert {_upstream_saw(r)["x-bastion-subject"] for r in responses} == {"spiffe://test/burst"}
    # One lookup derived the identity; every request was answered by the native plane.
    assert [plane(r) != python for r in responses] == [True] * count
    assert after[("cert", "found")] == before.get(("cert", "found"), 0) + 1
