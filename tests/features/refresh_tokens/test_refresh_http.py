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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from _support import BastionProcess, EchoThread
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.settings import Settings
from bastion.storage import Client, Database, User


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, echo: EchoThread) -> Iterator[BastionProcess]:
    cwd = tmp_path_factory.mktemp("refresh")
    (cwd / "bastion.yaml").write_text(
        f"storage: sqlite:///{cwd}/bastion.db\n"
        "routes:\n"
        "  - name: orders\n"
        "    match: {path: /api/orders, methods: [GET]}\n"
        f"    upstream: {echo.server.url}\n"
        "    auth: [jwt]\n"
        "    scopes: {GET: [orders:read]}\n"
    )
    proc = BastionProcess("-c", "bastion.yaml", cwd=cwd).start()
    try:
        yield proc
    finally:
        proc.stop()


def _seed_family(database: Path) -> str:
    """A public client, a user and a refresh-token family; the family's first token."""

    async def seed() -> str:
        db = await Database.connect(f"sqlite:///{database}")
        try:
            client = await db.clients.create(
                Client(
                    client_id="spa",
                    client_type="public",
                    token_endpoint_auth_method="none",
                    grant_types=("authorization_code", "refresh_token"),
                    redirect_uris=("http://127.0.0.1:9999/cb",),
                    scopes=("orders:read",),
                )
            )
            user = await db.users.create(User(username="alice"))
            service = RefreshTokenService(db.refresh_tokens, Settings().tokens)
            return (await service.issue_family(client, user.id, "orders:read")).token
        finally:
            await db.close()

    return asyncio.run(seed())


def _refused_within_a_second(http: httpx.Client, access_token: str) -> None:
    deadline = time.monotonic() + 1.0
    while True:
        response = http.get("/api/orders", headers={"Authorization": f"Bearer {access_token}"})
        if response.status_code == 401:
            return
        assert time.monotonic() < deadline, "the family's access token still works after 1 s"
        time.sleep(0.05)


def test_rotation_reuse_and_the_gateway(server: BastionProcess) -> None:
    first = _seed_family(server.cwd / "bastion.db")
    token_url = server.url + "/oauth2/token"
    with (
        OAuth2Client(client_id="spa", token_endpoint_auth_method="none", verify=False) as rp,
        httpx.Client(base_url=server.url, verify=False, timeout=10) as http,
    ):
        second = rp.refresh_token(token_url, refresh_token=first)
        assert second["token_type"] == "Bearer"
        assert second["scope"] == "orders:read"
        assert second["refresh_token"] != first
        assert second["refresh_token"].startswith("brt_")
        bearer = {"Authorization": f"Bearer {second['access_token']}"}
        assert http.get("/api/orders", headers=bearer).status_code == 200

        third = rp.refresh_token(token_url, refresh_token=second["refresh_token"])
        assert (
            http.get(
                "/api/orders", headers={"Authorization": f"Bearer {third['access_token']}"}
            ).status_code
            == 200
        )

        # The rotated token again: a reuse.
        replay = http.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": second["refresh_token"],
                "client_id": "spa",
            },
        )
        assert replay.status_code == 400
        assert replay.json() == {
            "error": "invalid_grant",
            "error_description": "the refresh token is invalid",
        }
        assert replay.headers["cache-control"] == "no-store"
        # The newest token died with its family ...
        newest = http.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": third["refresh_token"],
                "client_id": "spa",
            },
        )
        assert (newest.status_code, newest.json()["error"]) == (400, "invalid_grant")
        # ... and so did the access tokens it issued, at the gateway.
        _refused_within_a_second(http, third["access_token"])
        _refused_within_a_second(http, second["access_token"])


def test_revocation_endpoint_ends_a_family(server: BastionProcess) -> None:
    first = _seed_family_for_revocation(server.cwd / "bastion.db")
    with httpx.Client(base_url=server.url, verify=False, timeout=10) as http:
        refreshed = http.post(
            "/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": first, "client_id": "spa"},
        )
        assert refreshed.status_code == 200, refreshed.text
        body = refreshed.json()
        revoked = http.post(
            "/oauth2/revoke",
            data={
                "token": body["refresh_token"],
                "token_type_hint": "refresh_token",
                "client_id": "spa",
            },
        )
        assert revoked.status_code == 200
        _refused_within_a_second(http, body["access_token"])
        again = http.post(
            "/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": "spa",
            },
        )
        assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


def _seed_family_for_revocation(database: Path) -> str:
    async def seed() -> str:
        db = await Database.connect(f"sqlite:///{database}")
        try:
            client = await db.clients.get("spa")
            user = await db.users.find_by_username("alice")
            assert user is not None
            service = RefreshTokenService(db.refresh_tokens, Settings().tokens)
            return (await service.issue_family(client, user.id, "orders:read")).token
        finally:
            await db.close()

    return asyncio.run(seed())
