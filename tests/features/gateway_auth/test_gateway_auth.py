"""End to end: introspection against bastion's own /oauth2/introspect, and the signed assertion.

One real ``bastion serve`` (plain HTTP behind a "trusted proxy" so it can ask
itself over loopback): a route with ``auth: [introspection]`` whose endpoint is
the same bastion, and a ``jwt`` route with the identity assertion enabled.
The recording echo upstream shows what arrives: the assertion verifies
against ``/oauth2/jwks.json`` with the right claims; the client's spoofed
assertion never arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread, free_port, run_cli
from _support.native import plane
from bastion.crypto import JWTVerifier, PublicKeySet


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


def _client(cwd: Path, name: str, *scopes: str) -> dict[str, Any]:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    result = run_cli(
        "clients",
        "create",
        name,
        "--grant",
        "client_credentials",
        *args,
        "--json",
        env={"BASTION_CONFIG": "bastion.yaml"},
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


BASE = "tls: off\ntrusted_proxies: [127.0.0.1]\nissuer: 'http://127.0.0.1:{port}'\n"


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, echo: EchoThread
) -> Iterator[tuple[BastionProcess, dict[str, Any], dict[str, Any]]]:
    cwd = tmp_path_factory.mktemp("gateway-auth")
    port = free_port()
    base = BASE.format(port=port)
    (cwd / "bastion.yaml").write_text(base)
    gateway_client = _client(cwd, "gateway", "bastion:introspect")
    caller = _client(cwd, "caller", "orders:read")
    (cwd / "bastion.yaml").write_text(
        base + "introspection:\n"
        f"  endpoint: http://127.0.0.1:{port}/oauth2/introspect\n"
        f"  client_id: {gateway_client['client_id']}\n"
        "  client_secret: env:INTRO_SECRET\n"
        "  cache_ttl: 0\n"
        "identity_headers:\n"
        "  assertion: {enabled: true, ttl: 20s}\n"
        "routes:\n"
        "  - name: opaque\n"
        "    match: {path: /opaque}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [introspection]\n"
        "    scopes: [orders:read]\n"
        "  - name: signed\n"
        "    match: {path: /signed}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [jwt]\n"
        "    roles: [admin]\n"
        "  - name: plain\n"
        "    match: {path: /plain}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [jwt]\n"
    )
    proc = BastionProcess(
        "-c",
        "bastion.yaml",
        cwd=cwd,
        port=port,
        env={"INTRO_SECRET": gateway_client["client_secret"]},
    ).start()
    try:
        yield proc, gateway_client, caller
    finally:
        proc.stop()


def _token(http: httpx.Client, client: dict[str, Any]) -> str:
    response = http.post(
        "/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_introspection_route_asks_bastion_itself(
    setup: tuple[BastionProcess, dict[str, Any], dict[str, Any]],
) -> None:
    server, _, caller = setup
    with httpx.Client(base_url=server.url, timeout=10) as http:
        token = _token(http, caller)
        ok = http.get("/opaque/1", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, ok.text
        seen = {k.lower(): v for k, v in ok.json()["headers"].items()}
        assert seen["x-bastion-subject"] == caller["client_id"]
        assert seen["x-bastion-scopes"] == "orders:read"
        assert "authorization" not in seen

        bogus = http.get("/opaque/1", headers={"Authorization": "Bearer not-a-token"})
        assert bogus.status_code == 401
        assert bogus.json()["reason"] == "invalid_token"
        assert bogus.headers["www-authenticate"] == 'Bearer realm="bastion", error="invalid_token"'

        revoked = http.post(
            "/oauth2/revoke",
            auth=(caller["client_id"], caller["client_secret"]),
            data={"token": token},
        )
        assert revoked.status_code == 200
        after = http.get("/opaque/1", headers={"Authorization": f"Bearer {token}"})
        assert after.status_code == 401


def test_upstream_gets_a_signed_assertion_verifiable_with_the_jwks(
    setup: tuple[BastionProcess, dict[str, Any], dict[str, Any]], echo: EchoThread
) -> None:
    server, _, caller = setup
    with httpx.Client(base_url=server.url, timeout=10) as http:
        token = _token(http, caller)
        ok = http.get(
            "/plain/1",
            headers={
                "Authorization": f"Bearer {token}",
                "X-Bastion-Assertion": "forged.by.client",
                "X_Bastion_Assertion": "forged",
            },
        )
        assert ok.status_code == 200, ok.text
        seen = {k.lower(): v for k, v in ok.json()["headers"].items()}
        assertion = seen["x-bastion-assertion"]
        assert "forged" not in json.dumps(seen)
        jwks = http.get("/oauth2/jwks.json").json()
        verifier = JWTVerifier(
            PublicKeySet.from_jwks(jwks),
            issuer=server.url.rstrip("/").replace("localhost", "127.0.0.1"),
            audience=echo.server.url,
            typ="bastion-assertion+jwt",
            required_claims=("exp", "iat", "jti", "sub"),
            max_lifetime=60,
        )
        claims = verifier.verify(assertion).claims
        assert claims["sub"] == caller["client_id"]
        assert claims["client_id"] == caller["client_id"]
        assert claims["scope"] == "orders:read"
        assert claims["route"] == "plain"
        assert claims["request_id"] == seen["x-bastion-request-id"]
        assert claims["exp"] - claims["iat"] == 20

        # The token's next request is served by the native plane too (the first one after
        # a lookup of its client's status), which signs alike.
        again = http.get("/plain/2", headers={"Authorization": f"Bearer {token}"})
        assert plane(again) == plane(ok)
        seen_again = {k.lower(): v for k, v in again.json()["headers"].items()}
        native = verifier.verify(seen_again["x-bastion-assertion"]).claims
        varying = ("jti", "iat", "exp", "request_id")
        assert native["jti"] != claims["jti"]
        assert native["request_id"] == seen_again["x-bastion-request-id"]
        assert {k: v for k, v in native.items() if k not in varying} == {
            k: v for k, v in claims.items() if k not in varying
        }
        assert list(native) == list(claims), "the same members in the same order"

        # The route requiring a role: a client-credentials token has none.
        denied = http.get("/signed/1", headers={"Authorization": f"Bearer {token}"})
        assert denied.status_code == 403
        assert denied.json()["reason"] == "missing_role"
        assert denied.json()["role"] == "admin"
