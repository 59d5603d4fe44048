"""End to end: refresh-token rotation and reuse detection against a running ``bastion serve``.

A family is seeded through the service on the server's database (the authorization-code
grant that will start families is not built yet); Authlib's client — code nobody here
wrote — refreshes it over HTTPS as a public client. Replaying a rotated token is
``400 invalid_grant`` and kills the newer token too, and the access token the family
issued is refused at a gateway ``jwt`` route within a second.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from _support import EchoThread
from _support.gateway_server import GatewayServer, audit_rows, gateway_fixture
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.settings import Settings
from bastion.storage import Client, Database, User

served = gateway_fixture(
    "  - name: orders\n"
    "    match: {path: /api/orders, methods: [GET]}\n"
    "    upstream: {echo}\n"
    "    auth: [jwt]\n"
    "    scopes: {GET: [orders:read]}\n",
    scope="function",
)


@pytest.fixture
def echo_upstream(echo: EchoThread) -> EchoThread:
    """The upstream ``served`` proxies to: the suite's echo server."""
    return echo


SPA = Client(
    client_id="spa",
    client_type="public",
    token_endpoint_auth_method="none",
    grant_types=("authorization_code", "refresh_token"),
    redirect_uris=("http://127.0.0.1:9999/cb",),
    scopes=("orders:read",),
)


def _seed_family(server: GatewayServer) -> str:
    """The public client ``spa``, a user and a refresh-token family; its first token."""

    async def seed() -> str:
        db = await Database.connect(f"sqlite:///{server.config.parent / 'bastion.db'}")
        try:
            client = await db.clients.create(SPA)
            user = await db.users.create(User(username="alice"))
            service = RefreshTokenService(db.refresh_tokens, Settings().tokens)
            return (await service.issue_family(client, user.id, "orders:read")).token
        finally:
            await db.close()

    return asyncio.run(seed())


def _refresh(http: httpx.Client, token: str) -> httpx.Response:
    """A refresh as a public client sends it (no Authlib: the refusals are what is read)."""
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "spa"}
    return http.post("/oauth2/token", data=form)


def _orders(http: httpx.Client, access_token: str) -> int:
    return http.get("/api/orders", headers={"Authorization": f"Bearer {access_token}"}).status_code


def _refused_within_a_second(http: httpx.Client, access_token: str) -> None:
    deadline = time.monotonic() + 1.0
    while _orders(http, access_token) != 401:
        assert time.monotonic() < deadline, "the family's access token still works after 1 s"
        time.sleep(0.05)


def test_rotation_reuse_and_the_gateway(served: GatewayServer) -> None:
    first = _seed_family(served)
    token_url = served.url + "/oauth2/token"
    with (
        OAuth2Client(client_id="spa", token_endpoint_auth_method="none", verify=False) as rp,
        served.client() as http,
    ):
        second = rp.refresh_token(token_url, refresh_token=first)
        assert second["token_type"] == "Bearer"
        assert second["scope"] == "orders:read"
        assert second["refresh_token"] != first
        assert second["refresh_token"].startswith("brt_")
        assert _orders(http, second["access_token"]) == 200
        third = rp.refresh_token(token_url, refresh_token=second["refresh_token"])
        assert _orders(http, third["access_token"]) == 200

        # The rotated token again: a reuse.
        replay = _refresh(http, second["refresh_token"])
        assert replay.status_code == 400
        assert replay.json() == {
            "error": "invalid_grant",
            "error_description": "the refresh token is invalid",
        }
        assert replay.headers["cache-control"] == "no-store"
        # The newest token died with its family ...
        newest = _refresh(http, third["refresh_token"])
        assert (newest.status_code, newest.json()["error"]) == (400, "invalid_grant")
        # ... and so did the access tokens it issued, at the gateway.
        _refused_within_a_second(http, third["access_token"])
        _refused_within_a_second(http, second["access_token"])
    # Audited as a reuse (what the token_reuse detector alerts on), once.
    reuse = _audited(served, "token.refresh_reuse")
    assert [(r.outcome, r.reason, r.client_id, r.ip) for r in reuse] == [
        ("failure", "refresh_token_reuse", "spa", "127.0.0.1")
    ]
    assert reuse[0].subject and reuse[0].data["family"]
    refused = {r.data["detail"] for r in _audited(served, "token.refused", count=2)}
    assert refused == {"refresh_token_reuse", "refresh_token_revoked"}


def _audited(server: GatewayServer, event_type: str, count: int = 1) -> list[Any]:
    """The audit rows of ``event_type``, once ``count`` are written (the writer batches)."""
    deadline = time.monotonic() + 10
    while True:
        rows = list(audit_rows(server.config.parent, event_type).values())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_revocation_endpoint_ends_a_family(served: GatewayServer) -> None:
    first = _seed_family(served)
    with served.client() as http:
        refreshed = _refresh(http, first)
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        assert _orders(http, body["access_token"]) == 200
        form = {"token": body["refresh_token"], "token_type_hint": "refresh_token"}
        revoked = http.post("/oauth2/revoke", data={**form, "client_id": "spa"})
        assert revoked.status_code == 200
        _refused_within_a_second(http, body["access_token"])
        again = _refresh(http, body["refresh_token"])
        assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    revoked_rows = _audited(served, "token.revoked")
    assert [(r.client_id, list(r.data)) for r in revoked_rows] == [("spa", ["family"])]
