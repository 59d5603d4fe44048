"""Brute-force throttling of client authentication at the token, introspection and
revocation endpoints (a real Runtime), and who may introspect."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from http_support import real_runtime

from bastion.http.endpoints import create_full_app
from bastion.oauth.clients import ClientSpec
from bastion.runtime import Runtime

TOKEN = "/oauth2/token"
PROXY = "10.9.9.9"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    throttle = {"login": {"free_attempts": 2, "base_delay": 5}}
    async with real_runtime(tmp_path, trusted_proxies=[PROXY], ratelimit=throttle) as rt:
        yield rt


def client_from(runtime: Runtime, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_full_app(runtime), client=(ip, 4000)),
        base_url="https://testserver",
    )


async def token(http: httpx.AsyncClient, client_id: str, secret: str, **kw: str) -> httpx.Response:
    return await http.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        headers=kw,
    )


async def test_failures_lock_the_client_from_that_address_only(runtime: Runtime) -> None:
    client, secret = await runtime.clients.create(ClientSpec(name="svc"))
    assert secret is not None
    attacker = client_from(runtime, "203.0.113.66")
    victim_proxy = client_from(runtime, PROXY)
    async with attacker, victim_proxy:
        assert (await token(attacker, client.client_id, secret)).status_code == 200
        for _ in range(3):  # two free failures, the third sets the lock
            response = await token(attacker, client.client_id, "wrong")
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_client"
        # Locked before the secret is even checked: the right one is refused too.
        response = await token(attacker, client.client_id, secret)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "5"
        assert response.headers["cache-control"] == "no-store"
        assert response.json() == {
            "error": "too_many_attempts",
            "error_description": "too many failed attempts; retry in 5 seconds",
        }
        # X-Forwarded-For from an untrusted peer is ignored: still the attacker's address.
        response = await token(
            attacker, client.client_id, secret, **{"X-Forwarded-For": "198.51.100.10"}
        )
        assert response.status_code == 429
        # The legitimate caller behind the trusted proxy is a different address: not locked.
        response = await token(
            victim_proxy, client.client_id, secret, **{"X-Forwarded-For": "198.51.100.10"}
        )
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
async def test_introspection_and_revocation_share_the_lock(runtime: Runtime, path: str) -> None:
    client, secret = await runtime.clients.create(
        ClientSpec(name="rs", scopes=["bastion:introspect"])
    )
    assert secret is not None
    async with client_from(runtime, "203.0.113.66") as attacker:
        assert (
            await attacker.post(path, data={"token": "x"}, auth=(client.client_id, secret))
        ).status_code == 200
        for _ in range(3):  # guessing the secret here instead of at the token endpoint
            response = await attacker.post(
                path, data={"token": "x"}, auth=(client.client_id, "wrong")
            )
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_client"
        response = await attacker.post(path, data={"token": "x"}, auth=(client.client_id, secret))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "too_many_attempts"
        # One lock for the client secret, whichever endpoint checks it.
        response = await token(attacker, client.client_id, secret)
        assert response.status_code == 429


async def test_only_clients_with_the_introspect_scope_may_introspect(runtime: Runtime) -> None:
    admin, admin_secret = await runtime.clients.create(
        ClientSpec(
            name="admin",
            scopes=["bastion:admin"],
            audiences=[runtime.settings.issuer_url + "/admin/api"],
        )
    )
    reader, reader_secret = await runtime.clients.create(
        ClientSpec(name="orders", scopes=["orders:read"])
    )
    rs, rs_secret = await runtime.clients.create(
        ClientSpec(name="rs", scopes=["bastion:introspect"])
    )
    assert admin_secret is not None and reader_secret is not None and rs_secret is not None
    async with client_from(runtime, "198.51.100.1") as http:
        admin_token = (await token(http, admin.client_id, admin_secret)).json()["access_token"]
        response = await http.post(
            "/oauth2/introspect",
            data={"token": admin_token},
            auth=(reader.client_id, reader_secret),
        )
        assert response.status_code == 400
        assert response.json() == {
            "error": "unauthorized_client",
            "error_description": "the client is not allowed to introspect tokens "
            "(it needs the scope bastion:introspect)",
        }
        assert "bastion:admin" not in response.text
        response = await http.post(
            "/oauth2/introspect", data={"token": admin_token}, auth=(rs.client_id, rs_secret)
        )
        assert response.status_code == 200
        assert response.json()["active"] is True


async def test_disabled_throttle(tmp_path: Path) -> None:
    disabled = {"login": {"enabled": False}}
    async with real_runtime(tmp_path, trusted_proxies=[PROXY], ratelimit=disabled) as rt:
        assert rt.client_throttle is None
        client, _ = await rt.clients.create(ClientSpec(name="svc"))
        async with client_from(rt, "203.0.113.66") as http:
            for _ in range(10):
                assert (await token(http, client.client_id, "wrong")).status_code == 401
