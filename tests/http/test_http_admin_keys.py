"""The admin API for API keys over HTTP (create_app + httpx ASGI transport).

Real database (SQLite; PostgreSQL + Redis for the lifecycle walk), the real
ApiKeyService, real JWT verification of the admin tokens.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from http_support import admin_runtime

from bastion.apikeys import ApiKeyService, InvalidApiKeyError
from bastion.crypto import JWTVerifier, PublicKeySet, SigningKeyPair, sign_jwt
from bastion.http.app import create_app
from bastion.http.endpoints.admin import ADMIN_AUDIENCE_PATH, KEYS_PATH, admin_routes
from bastion.settings import Settings
from bastion.storage import Database, migrate
from bastion.storage.shared import SharedState, open_shared_state

SETTINGS = Settings()
ISSUER = SETTINGS.issuer_url
AUDIENCE = ISSUER + ADMIN_AUDIENCE_PATH


class AccessTokens:
    """Stand-in for runtime.access_tokens: the real JWTVerifier over one generated key."""

    def __init__(self, key: SigningKeyPair) -> None:
        self.keys = PublicKeySet.from_jwks({"keys": [key.public_jwk()]})

    async def verify(self, token: str, *, audience: str | None = None) -> Mapping[str, Any]:
        verifier = JWTVerifier(self.keys, issuer=ISSUER, audience=audience, typ="at+jwt", leeway=0)
        return verifier.verify(token).claims


async def _gateway(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - unused
    raise AssertionError("admin requests must never reach the gateway")


class Env:
    def __init__(self, db: Database, shared: SharedState) -> None:
        self.key = SigningKeyPair.generate("ES256")
        self.service = ApiKeyService(db, SETTINGS, shared)
        self.runtime = admin_runtime(
            settings=SETTINGS,
            db=db,
            shared=shared,
            gateway=_gateway,
            node_id="test",
            access_tokens=AccessTokens(self.key),
            api_keys=self.service,
        )
        self.app = create_app(self.runtime, routes=admin_routes(self.runtime))
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="https://testserver"
        )

    def auth(self, scope: str = "bastion:admin", **extra: Any) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "admin-client",
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "jti": secrets.token_hex(8),
            "client_id": "admin-client",
            "scope": scope,
            **extra,
        }
        return {"authorization": f"Bearer {sign_jwt(claims, self.key, typ='at+jwt')}"}

    async def create(self, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "key")
        response = await self.http.post(KEYS_PATH, json=body, headers=self.auth())
        assert response.status_code == 201, response.text
        return dict(response.json())


async def open_env(url: str, shared_url: str = "memory://", prefix: str = "") -> Env:
    await migrate(url)
    db = await Database.connect(url)
    shared = await open_shared_state(shared_url, key_prefix=prefix)
    return Env(db, shared)


async def close_env(env: Env) -> None:
    await env.http.aclose()
    await env.runtime.shared.close()
    await env.runtime.db.close()


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    e = await open_env(sqlite_url)
    try:
        yield e
    finally:
        await close_env(e)


OUT_MEMBERS = {
    "id",
    "prefix",
    "name",
    "status",
    "owner_type",
    "owner_id",
    "scopes",
    "routes",
    "expires_at",
    "rate_limits",
    "ip_allow",
    "metadata",
    "disabled",
    "revoked_at",
    "rotated_from",
    "grace_until",
    "last_used_at",
    "last_used_ip",
    "created_at",
    "updated_at",
}


async def test_create_returns_the_key_once(env: Env) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    response = await env.http.post(
        KEYS_PATH,
        json={
            "name": "billing",
            "owner_type": "client",
            "owner_id": "svc-billing",
            "scopes": ["orders:read"],
            "routes": ["orders"],
            "expires_at": expires.isoformat(),
            "rate_limits": [{"rate": "100/minute"}],
            "ip_allow": ["10.0.0.0/8"],
            "metadata": {"team": "billing"},
        },
        headers=env.auth(),
    )
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == OUT_MEMBERS | {"key"}
    key = body["key"]
    assert key.startswith("bst_") and key.startswith(body["prefix"])
    assert response.headers["location"] == f"{KEYS_PATH}/{body['id']}"
    assert body["status"] == "active"
    assert body["scopes"] == ["orders:read"]
    assert body["routes"] == ["orders"]
    assert body["ip_allow"] == ["10.0.0.0/8"]
    assert datetime.fromisoformat(body["expires_at"]) == expires
    # The key works, and is never shown again.
    record = await env.service.verify(key, ip="10.1.2.3")
    assert record.id == body["id"]
    shown = await env.http.get(response.headers["location"], headers=env.auth())
    listed = await env.http.get(KEYS_PATH, headers=env.auth())
    for later in (shown, listed):
        assert later.status_code == 200
        assert key not in later.text
        assert record.digest not in later.text
    assert set(shown.json()) == OUT_MEMBERS
    assert shown.json()["id"] == body["id"]


async def test_authentication_and_scopes(env: Env) -> None:
    response = await env.http.get(KEYS_PATH)
    assert response.status_code == 401
    assert response.json()["reason"] == "missing_token"
    read = env.auth("bastion:admin:read")
    assert (await env.http.get(KEYS_PATH, headers=read)).status_code == 200
    response = await env.http.post(KEYS_PATH, json={"name": "x"}, headers=read)
    assert response.status_code == 403
    assert response.json()["reason"] == "insufficient_scope"
    assert response.json()["required_scope"] == "bastion:admin"
    response = await env.http.get(KEYS_PATH, headers=env.auth("orders:read"))
    assert response.status_code == 403


@pytest.mark.parametrize(
    "cnf",
    [
        {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
        {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"},
    ],
)
async def test_sender_constrained_token_is_not_a_bearer_token(
    env: Env, cnf: dict[str, str]
) -> None:
    response = await env.http.get(KEYS_PATH, headers=env.auth(cnf=cnf))
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_exchanged_from_an_api_key_is_no_admin_credential(env: Env) -> None:
    # Even with the admin audience and scope (as minted before the exchange refused both).
    headers = env.auth(client_id="apikey:k1", sub="apikey:k1", key_id="k1")
    response = await env.http.get(KEYS_PATH, headers=headers)
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_token"


async def test_list_pages_and_owner_filter(env: Env) -> None:
    ids = []
    for i in range(5):
        owner = {"owner_type": "user", "owner_id": "alice"} if i % 2 == 0 else {}
        ids.append((await env.create(name=f"k{i}", **owner))["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await env.http.get(KEYS_PATH, params=params, headers=env.auth())).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    page = (
        await env.http.get(
            KEYS_PATH, params={"owner_type": "user", "owner_id": "alice"}, headers=env.auth()
        )
    ).json()
    assert [item["id"] for item in page["items"]] == [ids[0], ids[2], ids[4]]
    for params, field in (
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"cursor": "bad cursor"}, "cursor"),
        ({"owner_type": "robot"}, "owner_type"),
    ):
        response = await env.http.get(KEYS_PATH, params=params, headers=env.auth())
        assert response.status_code == 400, params
        assert response.json()["reason"] == "invalid_request"
        assert response.json()["errors"][0]["field"] == field


async def test_update(env: Env) -> None:
    created = await env.create(name="before", scopes=["a"])
    one = f"{KEYS_PATH}/{created['id']}"
    response = await env.http.patch(
        one,
        json={"name": "after", "scopes": ["a", "b"], "expires_at": None, "disabled": True},
        headers=env.auth(),
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["scopes"], body["disabled"], body["status"]) == (
        "after",
        ["a", "b"],
        True,
        "disabled",
    )
    with pytest.raises(InvalidApiKeyError) as caught:
        await env.service.verify(created["key"])
    assert caught.value.reason == "disabled"
    response = await env.http.patch(one, json={"scopes": None}, headers=env.auth())
    assert response.status_code == 400
    assert response.json()["detail"] == "scopes: cannot be null; send a value"
    response = await env.http.patch(one, json={"owner_id": "x"}, headers=env.auth())
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "owner_id"
    response = await env.http.patch(one, json={"scopes": ["bad scope"]}, headers=env.auth())
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_api_key_metadata"
    assert response.json()["field"] == "scopes"
    response = await env.http.patch(one, json={}, headers=env.auth())
    assert response.status_code == 200 and response.json()["name"] == "after"


async def test_rotate_keeps_the_old_key_for_the_grace_period(env: Env) -> None:
    created = await env.create(name="rot", scopes=["a"])
    response = await env.http.post(
        f"{KEYS_PATH}/{created['id']}/rotate", json={"grace_seconds": 60}, headers=env.auth()
    )
    assert response.status_code == 201
    successor = response.json()
    assert response.headers["location"] == f"{KEYS_PATH}/{successor['id']}"
    assert successor["rotated_from"] == created["id"]
    assert successor["scopes"] == ["a"]
    assert successor["key"] != created["key"]
    old = (await env.http.get(f"{KEYS_PATH}/{created['id']}", headers=env.auth())).json()
    assert old["status"] == "grace"
    grace_until = datetime.fromisoformat(old["grace_until"]).timestamp()
    await env.service.verify(created["key"])
    await env.service.verify(successor["key"])
    with pytest.raises(InvalidApiKeyError) as caught:
        await env.service.verify(created["key"], now=grace_until + 1)
    assert caught.value.reason == "grace_ended"
    # Rotating the old key again is a state conflict; no body means the default grace.
    response = await env.http.post(f"{KEYS_PATH}/{created['id']}/rotate", headers=env.auth())
    assert response.status_code == 409
    assert response.json()["reason"] == "api_key_state_conflict"
    response = await env.http.post(f"{KEYS_PATH}/{successor['id']}/rotate", headers=env.auth())
    assert response.status_code == 201
    response = await env.http.post(
        f"{KEYS_PATH}/{successor['id']}/rotate", json={"grace_seconds": -1}, headers=env.auth()
    )
    assert response.status_code == 400


async def test_revoke_disable_enable_delete(env: Env) -> None:
    created = await env.create()
    one = f"{KEYS_PATH}/{created['id']}"
    response = await env.http.post(one + "/disable", headers=env.auth())
    assert response.status_code == 200 and response.json()["status"] == "disabled"
    response = await env.http.post(one + "/enable", headers=env.auth())
    assert response.status_code == 200 and response.json()["status"] == "active"
    await env.service.verify(created["key"])
    response = await env.http.post(one + "/revoke", headers=env.auth())
    assert response.status_code == 200
    assert response.json()["status"] == "revoked" and response.json()["revoked_at"]
    with pytest.raises(InvalidApiKeyError) as caught:
        await env.service.verify(created["key"])
    assert caught.value.reason == "revoked"
    response = await env.http.delete(one, headers=env.auth())
    assert response.status_code == 204 and response.content == b""
    for method, path in (
        ("GET", one),
        ("DELETE", one),
        ("POST", one + "/revoke"),
        ("GET", f"{KEYS_PATH}/no%20such"),
    ):
        response = await env.http.request(method, path, headers=env.auth())
        assert response.status_code == 404, (method, path)
        assert response.json()["reason"] == "not_found"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({}, 400, "invalid_request"),
        ({"name": "x", "expires_at": "2030-01-01T00:00:00"}, 400, "invalid_request"),
        ({"name": "x", "unknown": 1}, 400, "invalid_request"),
        ({"name": "x", "scopes": "a"}, 400, "invalid_request"),
        ({"name": "x", "ip_allow": ["not-an-ip"]}, 400, "invalid_api_key_metadata"),
        ({"name": "x", "rate_limits": [{"rate": "lots"}]}, 400, "invalid_api_key_metadata"),
        ({"name": "x", "owner_type": "user"}, 400, "invalid_api_key_metadata"),
        ({"name": "x", "expires_at": "2000-01-01T00:00:00Z"}, 400, "invalid_api_key_metadata"),
    ],
)
async def test_invalid_create_bodies(
    env: Env, body: dict[str, Any], status: int, reason: str
) -> None:
    response = await env.http.post(KEYS_PATH, json=body, headers=env.auth())
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == reason
    assert (await env.service.list()).items == ()


async def test_non_json_and_oversized_bodies(env: Env) -> None:
    response = await env.http.post(
        KEYS_PATH, content=b"name=x", headers={**env.auth(), "content-type": "text/plain"}
    )
    assert response.status_code == 415
    response = await env.http.post(
        KEYS_PATH,
        content=b"{" + b" " * 70000 + b"}",
        headers={**env.auth(), "content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_lifecycle_on_postgresql_and_redis(
    postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    env = await open_env(postgres_url, redis_url, redis_prefix)
    try:
        created = await env.create(name="pg", scopes=["a"], owner_type="user", owner_id="bob")
        await env.service.verify(created["key"])
        rotated = await env.http.post(
            f"{KEYS_PATH}/{created['id']}/rotate", json={"grace_seconds": 0}, headers=env.auth()
        )
        assert rotated.status_code == 201
        with pytest.raises(InvalidApiKeyError) as caught:
            await env.service.verify(created["key"])
        assert caught.value.reason == "grace_ended"
        successor = rotated.json()
        await env.service.verify(successor["key"])
        page = (
            await env.http.get(
                KEYS_PATH, params={"owner_type": "user", "owner_id": "bob"}, headers=env.auth()
            )
        ).json()
        assert [item["id"] for item in page["items"]] == [created["id"], successor["id"]]
        assert [item["status"] for item in page["items"]] == ["rotated", "active"]
        response = await env.http.post(f"{KEYS_PATH}/{successor['id']}/revoke", headers=env.auth())
        assert response.json()["status"] == "revoked"
        assert (
            await env.http.delete(f"{KEYS_PATH}/{successor['id']}", headers=env.auth())
        ).status_code == 204
    finally:
        await close_env(env)
