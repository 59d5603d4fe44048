"""Verified TLS to https upstreams: a private CA per route, SNI / host name, upstream mTLS."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from _support.tls import ScratchCA
from bastion.crypto.tls import server_ssl_context
from bastion.demo.echo import EchoServer, start_echo_server
from bastion.gateway.errors import GatewayConfigError, UpstreamTLSError, UpstreamUnavailableError
from bastion.gateway.pipeline import Gateway
from gateway.gateway_support import Match, Route, call


@dataclass(frozen=True)
class TLSRoute(Route):
    upstream_ca: Path | None = None
    upstream_client_cert: Path | None = None
    upstream_client_key: Path | None = None


def tls_route(url: str, **kw: Any) -> TLSRoute:
    return TLSRoute(name="tls", match=Match(path="/"), upstream=url, **kw)


@pytest.fixture
def ca(tmp_path: Path) -> ScratchCA:
    return ScratchCA.create(tmp_path / "ca")


@pytest.fixture
async def upstream(ca: ScratchCA) -> AsyncIterator[EchoServer]:
    cert, key = ca.issue("upstream", ("localhost",))
    server = await start_echo_server(tls=server_ssl_context(cert, key))
    try:
        yield server
    finally:
        await server.close()


def by_name(server: EchoServer, host: str = "localhost") -> str:
    return f"https://{host}:{server.port}"


async def test_verified_with_the_route_ca(ca: ScratchCA, upstream: EchoServer) -> None:
    gw = Gateway([tls_route(by_name(upstream), upstream_ca=ca.cert)])
    result = await call(gw, "GET", "/x")
    assert result.status == 200 and result.json()["path"] == "/x"
    assert upstream.received[-1].header("host") == f"localhost:{upstream.port}"
    await gw.shutdown()


async def test_refused_without_the_ca(upstream: EchoServer) -> None:
    gw = Gateway([tls_route(by_name(upstream))])  # system CAs do not know the test CA
    with pytest.raises(UpstreamTLSError) as caught:
        await call(gw, "GET", "/x")
    assert (caught.value.status, caught.value.code) == (502, "upstream_tls_error")
    assert caught.value.detail == (
        "The TLS handshake with the upstream failed: its certificate was not accepted "
        "(unable to get local issuer certificate)."
    )
    assert len(upstream.received) == 0
    await gw.shutdown()


async def test_refused_for_a_wrong_host_name(ca: ScratchCA, upstream: EchoServer) -> None:
    # The certificate names "localhost"; connecting by IP must not pass.
    gw = Gateway([tls_route(by_name(upstream, "127.0.0.1"), upstream_ca=ca.cert)])
    with pytest.raises(UpstreamTLSError) as caught:
        await call(gw, "GET", "/x")
    assert caught.value.detail == (
        "The TLS handshake with the upstream failed: its certificate was not accepted "
        "(IP address mismatch, certificate is not valid for '127.0.0.1'.)."
    )
    await gw.shutdown()


async def test_upstream_mtls_client_certificate(ca: ScratchCA) -> None:
    cert, key = ca.issue("mtls-upstream", ("localhost",))
    context = server_ssl_context(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca.cert))
    server = await start_echo_server(tls=context)
    client_cert, client_key = ca.issue("bastion-client", client=True)
    try:
        with_cert = Gateway(
            [
                tls_route(
                    by_name(server),
                    upstream_ca=ca.cert,
                    upstream_client_cert=client_cert,
                    upstream_client_key=client_key,
                )
            ]
        )
        assert (await call(with_cert, "GET", "/m")).status == 200
        await with_cert.shutdown()
        without = Gateway([tls_route(by_name(server), upstream_ca=ca.cert)])
        with pytest.raises(UpstreamUnavailableError) as caught:
            await call(without, "GET", "/m")
        # TLS 1.3: the server checks the client certificate after the client's handshake
        # finished, so the refusal arrives as a closed connection.
        assert caught.value.detail == "The upstream closed the connection without answering."
        assert len(server.received) == 1
        await without.shutdown()
    finally:
        await server.close()


def test_unusable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(GatewayConfigError) as caught:
        Gateway([tls_route("https://localhost:1", upstream_ca=bad)])
    assert caught.value.detail.startswith(
        f"routes[tls].upstream_ca {bad} is not a usable PEM CA bundle ("
    )
