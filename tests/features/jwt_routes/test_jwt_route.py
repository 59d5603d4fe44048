"""End to end: bastion's own access tokens on a gateway route of a real ``bastion serve``.

A client gets a token with the client credentials grant, calls a route with
``auth: [jwt]`` and per-method scopes, and the recording echo upstream shows
what was forwarded: bastion's identity headers, never the client's spoofed
ones, never the token. Revocation takes effect on the next request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from _support import BastionProcess, EchoThread, run_cli


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, echo: EchoThread) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("jwt-route")
    (cwd / "bastion.yaml").write_text(
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [jwt]\n"
        "    scopes: {GET: [orders:read], '*': [orders:write]}\n"
    )
    proc = BastionProcess("-c", "bastion.yaml", cwd=cwd).start()
    try:
        yield proc
    finally:
        proc.stop()


def _client(server: BastionProcess, *scopes: str) -> dict[str, Any]:
    args = [arg for scope in scopes for arg in ("--scope", scope)]
    result = run_cli(
        "clients",
        "create",
        "svc",
        "--grant",
        "client_credentials",
        *args,
        "--json",
        env={"BASTION_CONFIG": "bastion.yaml"},
        cwd=server.cwd,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _token(http: httpx.Client, client: dict[str, Any]) -> str:
    response = http.post(
        "/oauth2/token",
        auth=(client["client_id"], client["client_secret"]),
        data={"grant_type": "client_credentials"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_jwt_route_identity_scopes_and_revocation(server: BastionProcess, echo: EchoThread) -> None:
    reader = _client(server, "orders:read")
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:
        token = _token(http, reader)
        spoofed = {
            "Authorization": f"Bearer {token}",
            "X-Bastion-Subject": "admin",
            "X_Bastion_Subject": "admin",
            "X-User-Id": "admin",
            "X-Forwarded-User": "admin",
            "Connection": "x-user",
            "X-User": "admin",
        }
        ok = http.get("/api/orders/1", headers=spoofed)
        assert ok.status_code == 200, ok.text
        seen = {name.lower(): value for name, value in ok.json()["headers"].items()}
        assert seen["x-bastion-subject"] == reader["client_id"]
        assert seen["x-bastion-client"] == reader["client_id"]
        assert seen["x-bastion-scopes"] == "orders:read"
        for name in (
            "authorization",
            "x-user-id",
            "x-forwarded-user",
            "x-user",
            "x_bastion_subject",
        ):
            assert name not in seen, name
        assert "admin" not in json.dumps(seen)
        assert token not in json.dumps(ok.json())

        write = http.post(
            "/api/orders", headers={"Authorization": f"Bearer {token}"}, content=b"{}"
        )
        assert write.status_code == 403
        assert write.json()["reason"] == "insufficient_scope"

        no_token = http.get("/api/orders/1")
        assert no_token.status_code == 401
        forged = http.get("/api/orders/1", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
        assert forged.status_code == 401
        assert forged.headers["www-authenticate"] == 'Bearer realm="bastion", error="invalid_token"'

        revoked = http.post(
            "/oauth2/revoke",
            auth=(reader["client_id"], reader["client_secret"]),
            data={"token": token},
        )
        assert revoked.status_code == 200
        after = http.get("/api/orders/1", headers={"Authorization": f"Bearer {token}"})
        assert after.status_code == 401
