"""The admin API's audit log endpoint over HTTP: filters, keyset pagination, scopes, errors."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from http_support import admin_runtime

from bastion.audit.events import Auditor, EventTypes
from bastion.audit.writer import AuditWriter
from bastion.crypto import JWTVerifier, PublicKeySet, SigningKeyPair, sign_jwt
from bastion.http.app import create_app
from bastion.http.endpoints.admin import ADMIN_AUDIENCE_PATH, AUDIT_PATH, admin_routes
from bastion.settings import Settings
from bastion.storage import Database, migrate
from bastion.storage.shared import MemorySharedState

SETTINGS = Settings()
ISSUER = SETTINGS.issuer_url
AUDIENCE = ISSUER + ADMIN_AUDIENCE_PATH


class AccessTokens:
    def __init__(self, key: SigningKeyPair) -> None:
        self.keys = PublicKeySet.from_jwks({"keys": [key.public_jwk()]})

    async def verify(self, token: str, *, audience: str | None = None) -> Mapping[str, Any]:
        verifier = JWTVerifier(self.keys, issuer=ISSUER, audience=audience, typ="at+jwt", leeway=0)
        return verifier.verify(token).claims


class Env:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.key = SigningKeyPair.generate("ES256")
        runtime = admin_runtime(
            settings=SETTINGS,
            db=db,
            shared=MemorySharedState(),
            gateway=None,
            node_id="test",
            access_tokens=AccessTokens(self.key),
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime, routes=admin_routes(runtime))),
            base_url="https://testserver",
        )

    def auth(self, scope: str = "bastion:admin:read") -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": "admin",
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "jti": secrets.token_hex(8),
            "client_id": "admin",
            "scope": scope,
        }
        return {"authorization": f"Bearer {sign_jwt(claims, self.key, typ='at+jwt')}"}

    async def get(self, scope: str = "bastion:admin:read", **params: Any) -> httpx.Response:
        return await self.http.get(AUDIT_PATH, params=params, headers=self.auth(scope))


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    await migrate(sqlite_url)
    db = await Database.connect(sqlite_url)
    auditor = Auditor()
    for i in range(7):
        auditor.record(
            EventTypes.GATEWAY_DENIED,
            "denied",
            reason="invalid_token",
            subject="alice" if i % 2 else "bob",
            request_id=f"r{i}",
        )
    await AuditWriter(auditor, db, "node-1").flush()
    e = Env(db)
    try:
        yield e
    finally:
        await e.http.aclose()
        await db.close()


async def test_pages_walk_every_event_newest_first(env: Env) -> None:
    seqs: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await env.get(**params)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        doc = response.json()
        seqs += [item["seq"] for item in doc["items"]]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            break
    assert seqs == [8, 7, 6, 5, 4, 3, 2, 1] and pages == 3


async def test_filters(env: Env) -> None:
    doc = (await env.get(subject="alice", type="gateway.denied")).json()
    assert [item["request_id"] for item in doc["items"]] == ["r5", "r3", "r1"]
    item = doc["items"][0]
    assert set(item) == {
        "id", "node_id", "seq", "occurred_at", "type", "outcome", "reason", "request_id", "ip",
        "user_agent", "subject", "client_id", "key_id", "route", "data", "prev_hash", "hash",
    }  # fmt: skip
    assert (await env.get(outcome="info")).json()["items"][0]["type"] == "audit.checkpoint"
    assert (await env.get(node_id="other")).json() == {"items": [], "next_cursor": None}
    assert len((await env.get(since="2000-01-01T00:00:00Z")).json()["items"]) == 8
    assert (await env.get(until="2000-01-01T00:00:00")).json()["items"] == []


async def test_filters_by_key_client_route_reason_request_and_ip(env: Env) -> None:
    auditor = Auditor()
    auditor.record(
        EventTypes.GATEWAY_DENIED,
        "denied",
        reason="insufficient_scope",
        key_id="k1",
        route="orders",
        ip="198.51.100.7",
        request_id="req-k1",
    )
    auditor.record(EventTypes.TOKEN_ISSUED, "success", client_id="svc", request_id="req-svc")
    await AuditWriter(auditor, env.db, "node-2").flush()

    async def request_ids(**params: str) -> list[str | None]:
        response = await env.get(**params)
        assert response.status_code == 200, response.text
        return [item["request_id"] for item in response.json()["items"]]

    assert await request_ids(key_id="k1") == ["req-k1"]
    assert await request_ids(client_id="svc") == ["req-svc"]
    assert await request_ids(route="orders") == ["req-k1"]
    assert await request_ids(reason="insufficient_scope") == ["req-k1"]
    assert await request_ids(request_id="req-svc") == ["req-svc"]
    assert await request_ids(ip="198.51.100.7", key_id="k1") == ["req-k1"]
    assert await request_ids(ip="198.51.100.7", key_id="k2") == []
    assert len(await request_ids(reason="invalid_token")) == 7


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"limit": "0"}, "limit", "must be a whole number from 1 to 1000"),
        ({"limit": "x"}, "limit", "must be a whole number from 1 to 1000"),
        ({"cursor": "abc"}, "cursor", "must be a next_cursor from a previous page"),
        (
            {"since": "yesterday"},
            "since",
            "must be an ISO 8601 date/time, e.g. 2026-01-31T12:00:00Z",
        ),
        ({"subject": "s" * 256}, "subject", "is at most 255 characters"),
        ({"ip": "1" * 65}, "ip", "is at most 64 characters"),
    ],
)
async def test_bad_query_is_a_400(
    env: Env, params: dict[str, str], field: str, message: str
) -> None:
    response = await env.get(**params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    doc = response.json()
    assert doc["errors"] == [{"field": field, "message": message}]
    assert doc["detail"] == f"{field}: {message}"


async def test_needs_an_admin_token_with_read_scope(env: Env) -> None:
    assert (await env.http.get(AUDIT_PATH)).status_code == 401
    assert (await env.get(scope="openid")).status_code == 403
    assert (await env.get(scope="bastion:admin")).status_code == 200
