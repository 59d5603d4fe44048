"""The admin API for OAuth clients over HTTP (create_app + httpx ASGI transport).

Real database (SQLite; PostgreSQL for the CRUD walk), real signing keys and JWT
verification; the access-token verifier is a stand-in with the lead's interface
(``await verify(token, audience=...)`` -> claims).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from http_support import admin_runtime
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bastion.crypto import JWTVerifier, PublicKeySet, SigningKeyPair, sign_jwt
from bastion.http.app import create_app
from bastion.http.endpoints.admin import (
    ADMIN_AUDIENCE_PATH,
    MAX_BODY_BYTES,
    admin_routes,
)
from bastion.oauth.clients import ClientService
from bastion.protocol.rfc6749.errors import InvalidClientError
from bastion.settings import Settings
from bastion.storage import Database, migrate
from bastion.storage.models import utcnow
from bastion.storage.shared import SharedState, open_shared_state

API = "/admin/api/v1"
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
    """One admin API under test: runtime, service, token minting and an HTTP client."""

    def __init__(self, db: Database, shared: SharedState) -> None:
        self.key = SigningKeyPair.generate("ES256")
        self.service = ClientService(db, SETTINGS, shared)
        self.runtime = admin_runtime(
            settings=SETTINGS,
            db=db,
            shared=shared,
            gateway=_gateway,
            node_id="test",
            access_tokens=AccessTokens(self.key),
            clients=self.service,
        )
        self.app = create_app(self.runtime, routes=admin_routes(self.runtime))
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="https://testserver"
        )

    def token(
        self, scope: str = "bastion:admin", key: SigningKeyPair | None = None, **claims: Any
    ) -> str:
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "admin-client",
            "aud": AUDIENCE,
            "exp": now + 300,
            "iat": now,
            "jti": secrets.token_hex(8),
            "client_id": "admin-client",
            "scope": scope,
        }
        body.update(claims)
        return sign_jwt(body, key or self.key, typ="at+jwt")

    def auth(self, scope: str = "bastion:admin", **claims: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(scope, **claims)}"}


async def open_env(url: str) -> tuple[Env, Database, SharedState]:
    await migrate(url)
    db = await Database.connect(url)
    shared = await open_shared_state("memory://")
    return Env(db, shared), db, shared


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    e, db, shared = await open_env(sqlite_url)
    try:
        yield e
    finally:
        await e.http.aclose()
        await shared.close()
        await db.close()


def problem(response: httpx.Response, status: int, reason: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    doc: dict[str, Any] = response.json()
    assert doc["reason"] == reason
    assert doc["status"] == status
    return doc


# -- authentication ---------------------------------------------------------------------------


async def test_no_token(env: Env) -> None:
    response = await env.http.get(f"{API}/clients")
    problem(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'


async def test_other_scheme_is_no_bearer_token(env: Env) -> None:
    response = await env.http.get(f"{API}/clients", headers={"authorization": "Basic YTpi"})
    problem(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda e: "garbage", id="garbage"),
        pytest.param(lambda e: "a.b.c", id="three-garbage-segments"),
        pytest.param(lambda e: e.token(exp=int(time.time()) - 10), id="expired"),
        pytest.param(lambda e: e.token(aud="https://api.example.com"), id="wrong-aud"),
        pytest.param(lambda e: e.token(aud=ISSUER), id="issuer-as-aud"),
        pytest.param(lambda e: e.token(iss="https://evil.example"), id="wrong-iss"),
        pytest.param(lambda e: e.token(key=SigningKeyPair.generate("ES256")), id="foreign-key"),
        pytest.param(
            lambda e: sign_jwt(
                {
                    "iss": ISSUER,
                    "aud": AUDIENCE,
                    "exp": int(time.time()) + 60,
                    "iat": int(time.time()),
                    "scope": "bastion:admin",
                },
                e.key,
                typ="JWT",
            ),
            id="wrong-typ",
        ),
        pytest.param(lambda e: e.token()[:-4] + "AAAA", id="bad-signature"),
    ],
)
async def test_refused_tokens(env: Env, make: Any) -> None:
    response = await env.http.get(
        f"{API}/clients", headers={"authorization": f"Bearer {make(env)}"}
    )
    doc = problem(response, 401, "invalid_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion", error="invalid_token"'
    assert doc["detail"] == "the access token is invalid, expired or not meant for the admin API"


async def test_a_runtime_without_a_verifier_refuses_every_token(env: Env) -> None:
    # AdminPlane.access_tokens None: nothing can be authenticated, so nothing is served (503).
    env.runtime.access_tokens = None
    for path in (f"{API}/clients", f"{API}/keys", f"{API}/audit"):
        response = await env.http.get(path, headers=env.auth())
        problem(response, 503, "admin_auth_unavailable")
    response = await env.http.get(f"{API}/clients")
    problem(response, 401, "missing_token")  # no token at all is still a 401


async def test_read_scope_reads_but_cannot_write(env: Env) -> None:
    read = env.auth("bastion:admin:read")
    assert (await env.http.get(f"{API}/clients", headers=read)).status_code == 200
    response = await env.http.post(f"{API}/clients", headers=read, json={"name": "x"})
    doc = problem(response, 403, "insufficient_scope")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="bastion", error="insufficient_scope", scope="bastion:admin"'
    )
    assert doc["required_scope"] == "bastion:admin"
    assert (await env.service.list()).items == ()


async def test_no_admin_scope(env: Env) -> None:
    response = await env.http.get(f"{API}/clients", headers=env.auth("orders:read"))
    problem(response, 403, "insufficient_scope")
    assert response.headers["www-authenticate"] == (
        'Bearer realm="bastion", error="insufficient_scope", scope="bastion:admin:read"'
    )


async def test_auth_is_checked_before_the_body_is_read(env: Env) -> None:
    response = await env.http.post(f"{API}/clients", content=b"{not json")
    problem(response, 401, "missing_token")


# -- CRUD -------------------------------------------------------------------------------------


async def crud_walk(env: Env) -> None:
    auth = env.auth()
    created = await env.http.post(
        f"{API}/clients",
        headers=auth,
        json={
            "name": "Billing",
            "scopes": ["orders:read"],
            "audiences": ["https://api.example.com"],
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    doc = created.json()
    client_id = doc["client_id"]
    secret = doc["client_secret"]
    assert created.headers["location"] == f"{API}/clients/{client_id}"
    assert secret.startswith("bcs_") and len(secret) == 47
    assert doc["token_endpoint_auth_method"] == "client_secret_basic"
    assert doc["grant_types"] == ["client_credentials"]
    assert [s["prefix"] for s in doc["secrets"]] == [secret[:8]]
    assert "digest" not in doc["secrets"][0]

    # The secret is never shown again.
    shown = await env.http.get(f"{API}/clients/{client_id}", headers=auth)
    assert shown.status_code == 200
    assert shown.headers["cache-control"] == "no-store"
    assert "client_secret" not in shown.json()
    assert secret not in shown.text
    assert secret[8:] not in shown.text
    listed = await env.http.get(f"{API}/clients", headers=auth)
    assert [c["client_id"] for c in listed.json()["items"]] == [client_id]
    assert secret not in listed.text

    patched = await env.http.patch(
        f"{API}/clients/{client_id}",
        headers=auth,
        json={"name": "Billing v2", "access_token_ttl": 600},
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["access_token_ttl"]) == ("Billing v2", 600)
    assert patched.json()["scopes"] == ["orders:read"]

    await env.service.authenticate_secret(client_id, secret)
    deleted = await env.http.delete(f"{API}/clients/{client_id}", headers=auth)
    assert deleted.status_code == 204
    problem(await env.http.get(f"{API}/clients/{client_id}", headers=auth), 404, "not_found")
    with pytest.raises(InvalidClientError):
        await env.service.authenticate_secret(client_id, secret)


async def test_crud_sqlite(env: Env) -> None:
    await crud_walk(env)


@pytest.mark.postgres
async def test_crud_postgres(postgres_url: str) -> None:
    e, db, shared = await open_env(postgres_url)
    try:
        await crud_walk(e)
    finally:
        await e.http.aclose()
        await shared.close()
        await db.close()


async def test_list_pagination(env: Env) -> None:
    auth = env.auth()
    ids = []
    for i in range(3):
        r = await env.http.post(f"{API}/clients", headers=auth, json={"name": f"c{i}"})
        ids.append(r.json()["client_id"])
    first = (await env.http.get(f"{API}/clients?limit=2", headers=auth)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = await env.http.get(
        f"{API}/clients", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth
    )
    got = [c["client_id"] for c in first["items"]] + [c["client_id"] for c in rest.json()["items"]]
    assert got == sorted(ids)
    assert rest.json()["next_cursor"] is None
    for query in ("limit=0", "limit=101", "limit=x", "cursor=%00"):
        doc = problem(
            await env.http.get(f"{API}/clients?{query}", headers=auth), 400, "invalid_request"
        )
        assert doc["errors"][0]["field"] in ("limit", "cursor")


async def test_unknown_client_is_404(env: Env) -> None:
    auth = env.auth()
    for method, suffix in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/disable"),
        ("POST", "/enable"),
        ("POST", "/rotate-secret"),
    ):
        response = await env.http.request(
            method,
            f"{API}/clients/nope{suffix}",
            headers=auth,
            json={} if method != "GET" else None,
        )
        problem(response, 404, "not_found")
    # An encoded NUL is refused before routing, on bastion's own paths as on the gateway's.
    problem(await env.http.get(f"{API}/clients/%00bad", headers=auth), 400, "invalid_path")


async def test_method_not_allowed_lists_methods(env: Env) -> None:
    response = await env.http.put(f"{API}/clients", headers=env.auth(), json={})
    problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, HEAD, POST"


async def test_public_and_private_key_jwt_clients(env: Env) -> None:
    auth = env.auth()
    # Public clients get the authorization_code grant (and refresh tokens with it).
    public = await env.http.post(
        f"{API}/clients",
        headers=auth,
        json={
            "name": "spa",
            "client_type": "public",
            "redirect_uris": ["https://app.example.com/cb"],
        },
    )
    assert public.status_code == 201, public.text
    assert public.json()["grant_types"] == ["authorization_code", "refresh_token"]
    refresh = await env.http.post(
        f"{API}/clients",
        headers=auth,
        json={"name": "svc", "grant_types": ["client_credentials", "refresh_token"]},
    )
    assert problem(refresh, 400, "invalid_client_metadata")["detail"].startswith(
        "grant_types: refresh_token needs authorization_code"
    )
    jwks = {"keys": [SigningKeyPair.generate("EdDSA").public_jwk()]}
    keyed = await env.http.post(
        f"{API}/clients",
        headers=auth,
        json={"name": "svc", "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks},
    )
    assert keyed.status_code == 201, keyed.text
    assert keyed.json()["client_secret"] is None
    assert keyed.json()["jwks"] == jwks


# -- rotation, disable ------------------------------------------------------------------------


async def test_rotate_secret_with_grace(env: Env) -> None:
    auth = env.auth()
    created = (await env.http.post(f"{API}/clients", headers=auth, json={"name": "a"})).json()
    client_id, old = created["client_id"], created["client_secret"]
    before = utcnow()
    rotated = await env.http.post(
        f"{API}/clients/{client_id}/rotate-secret", headers=auth, json={"grace_seconds": 3600}
    )
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["client_secret"]
    assert new != old and new.startswith("bcs_")
    in_grace = rotated.json()["secrets"][0]
    assert in_grace["prefix"] == old[:8] and in_grace["expires_at"] is not None
    assert rotated.json()["secrets"][1]["expires_at"] is None

    soon = before + timedelta(seconds=3000)
    await env.service.authenticate_secret(client_id, old, now=soon)
    await env.service.authenticate_secret(client_id, new, now=soon)
    later = before + timedelta(seconds=3700)
    with pytest.raises(InvalidClientError) as info:
        await env.service.authenticate_secret(client_id, old, now=later)
    assert info.value.reason == "secret_expired"
    await env.service.authenticate_secret(client_id, new, now=later)
    shown = await env.http.get(f"{API}/clients/{client_id}", headers=auth)
    assert new not in shown.text and "client_secret" not in shown.json()


async def test_rotate_secret_default_grace_and_empty_body(env: Env) -> None:
    auth = env.auth()
    created = (await env.http.post(f"{API}/clients", headers=auth, json={"name": "a"})).json()
    client_id = created["client_id"]
    rotated = await env.http.post(f"{API}/clients/{client_id}/rotate-secret", headers=auth)
    assert rotated.status_code == 200, rotated.text
    problem(
        await env.http.post(
            f"{API}/clients/{client_id}/rotate-secret", headers=auth, json={"grace_seconds": -1}
        ),
        400,
        "invalid_request",
    )


async def test_disable_refuses_authentication_immediately(env: Env) -> None:
    auth = env.auth()
    created = (await env.http.post(f"{API}/clients", headers=auth, json={"name": "a"})).json()
    client_id, secret = created["client_id"], created["client_secret"]
    assert await env.service.find_active(client_id) is not None
    disabled = await env.http.post(f"{API}/clients/{client_id}/disable", headers=auth)
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    with pytest.raises(InvalidClientError) as info:
        await env.service.authenticate_secret(client_id, secret)
    assert info.value.reason == "client_disabled"
    assert await env.service.find_active(client_id) is None
    enabled = await env.http.post(f"{API}/clients/{client_id}/enable", headers=auth)
    assert enabled.json()["disabled"] is False
    await env.service.authenticate_secret(client_id, secret)


# -- bad bodies -------------------------------------------------------------------------------


async def test_bad_bodies(env: Env) -> None:
    auth = env.auth()
    url = f"{API}/clients"
    json_headers = {**auth, "content-type": "application/json"}
    doc = problem(
        await env.http.post(url, headers=json_headers, content=b"{nope"), 400, "invalid_request"
    )
    assert doc["errors"][0]["field"] == "body"
    doc = problem(await env.http.post(url, headers=auth, json=[1, 2]), 400, "invalid_request")
    doc = problem(
        await env.http.post(url, headers=auth, json={"name": "x", "colour": "red"}),
        400,
        "invalid_request",
    )
    assert doc["errors"] == [{"field": "colour", "message": "Extra inputs are not permitted"}]
    doc = problem(
        await env.http.post(url, headers=auth, json={"name": "x", "grant_types": ["a", 3]}),
        400,
        "invalid_request",
    )
    assert doc["detail"] == "grant_types[1]: Input should be a valid string"
    doc = problem(
        await env.http.post(url, headers=auth, json={"name": "x", "access_token_ttl": "900"}),
        400,
        "invalid_request",
    )
    assert doc["errors"][0]["field"] == "access_token_ttl"
    doc = problem(await env.http.post(url, headers=auth, json={}), 400, "invalid_request")
    assert doc["errors"] == [{"field": "name", "message": "Field required"}]
    doc = problem(
        await env.http.post(url, headers=auth, json={"name": "x", "scopes": ["a b"]}),
        400,
        "invalid_client_metadata",
    )
    assert doc["field"] == "scopes"
    problem(
        await env.http.post(url, headers={**auth, "content-type": "text/plain"}, content=b"{}"),
        415,
        "unsupported_media_type",
    )
    big = orjson.dumps({"name": "x", "metadata": {"pad": "a" * MAX_BODY_BYTES}})
    problem(await env.http.post(url, headers=json_headers, content=big), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(70):
            yield b" " * 1024

    problem(
        await env.http.post(url, headers=json_headers, content=chunks()), 413, "payload_too_large"
    )
    assert (await env.service.list()).items == ()


async def test_id_token_signed_response_alg(env: Env) -> None:
    """OIDC Registration §2: one of signing_keys.id_token_algorithms; default the first."""
    auth = env.auth()
    url = f"{API}/clients"
    rs = await env.http.post(
        url, headers=auth, json={"name": "rp", "id_token_signed_response_alg": "RS256"}
    )
    assert rs.status_code == 201, rs.text
    assert rs.json()["id_token_signed_response_alg"] == "RS256"
    default = await env.http.post(url, headers=auth, json={"name": "rp2"})
    assert default.json()["id_token_signed_response_alg"] == "ES256"  # stored explicitly
    one = f"{url}/{rs.json()['client_id']}"
    for alg in ("PS256", "HS256", "none", "es256"):
        doc = problem(
            await env.http.patch(one, headers=auth, json={"id_token_signed_response_alg": alg}),
            400,
            "invalid_client_metadata",
        )
        assert doc["field"] == "id_token_signed_response_alg"
        assert doc["detail"] == (
            f"id_token_signed_response_alg: {alg!r} is not offered; use one of ES256, RS256 "
            "(signing_keys.id_token_algorithms)"
        )
    doc = problem(
        await env.http.post(
            url, headers=auth, json={"name": "x", "id_token_signed_response_alg": 7}
        ),
        400,
        "invalid_request",
    )
    assert doc["errors"][0]["field"] == "id_token_signed_response_alg"
    patched = await env.http.patch(
        one, headers=auth, json={"id_token_signed_response_alg": "ES256"}
    )
    assert patched.json()["id_token_signed_response_alg"] == "ES256"
    # null: back to the server's default, whatever it is when a token is signed.
    cleared = await env.http.patch(one, headers=auth, json={"id_token_signed_response_alg": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["id_token_signed_response_alg"] is None
    shown = await env.http.get(one, headers=auth)
    assert shown.json()["id_token_signed_response_alg"] is None


async def test_patch_null_for_required_member(env: Env) -> None:
    auth = env.auth()
    client_id = (await env.http.post(f"{API}/clients", headers=auth, json={"name": "a"})).json()[
        "client_id"
    ]
    doc = problem(
        await env.http.patch(f"{API}/clients/{client_id}", headers=auth, json={"name": None}),
        400,
        "invalid_request",
    )
    assert doc["errors"] == [{"field": "name", "message": "cannot be null"}]
    doc = problem(
        await env.http.patch(
            f"{API}/clients/{client_id}", headers=auth, json={"client_type": "public"}
        ),
        400,
        "invalid_request",
    )
    assert doc["errors"][0]["field"] == "client_type"


# -- fuzzing: no body makes a 500 ------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
member_values = (
    json_values
    | st.sampled_from(
        [
            "confidential",
            "public",
            "none",
            "private_key_jwt",
            "client_secret_post",
            "https://a.example/cb",
            "http://127.0.0.1/cb",
            "x\x00y",
        ]
    )
    | st.lists(
        st.sampled_from(
            [
                "client_credentials",
                "authorization_code",
                "refresh_token",
                "a b",
                "https://x",
                "urn:x",
                "",
                "http://example.com/#f",
            ]
        ),
        max_size=3,
    )
)
MEMBERS = [
    "name",
    "client_type",
    "token_endpoint_auth_method",
    "grant_types",
    "scopes",
    "audiences",
    "access_token_ttl",
    "redirect_uris",
    "jwks",
    "metadata",
    "id_token_signed_response_alg",
    "grace_seconds",
]
bodies = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(MEMBERS), member_values, max_size=6),
    st.builds(
        lambda extra: {"name": "fuzz", **extra},
        st.dictionaries(st.sampled_from(MEMBERS), member_values, max_size=4),
    ),
)


def test_no_body_makes_a_500(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    env, db, shared = loop.run_until_complete(open_env(f"sqlite:///{tmp_path}/fuzz.db"))
    auth = env.auth()
    created = loop.run_until_complete(
        env.http.post(f"{API}/clients", headers=auth, json={"name": "target"})
    ).json()
    target = f"{API}/clients/{created['client_id']}"
    statuses: set[int] = set()

    @hsettings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies, where=st.sampled_from(["create", "patch", "rotate"]))
    def check(body: Any, where: str) -> None:
        method, url = {
            "create": ("POST", f"{API}/clients"),
            "patch": ("PATCH", target),
            "rotate": ("POST", f"{target}/rotate-secret"),
        }[where]
        response = loop.run_until_complete(
            env.http.request(
                method,
                url,
                headers={**auth, "content-type": "application/json"},
                content=json.dumps(body).encode(),
            )
        )
        statuses.add(response.status_code)
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"

    try:
        check()
    finally:
        loop.run_until_complete(env.http.aclose())
        loop.run_until_complete(shared.close())
        loop.run_until_complete(db.close())
        loop.close()
    assert 400 in statuses and statuses & {200, 201}


async def test_logout_members_through_the_admin_api(env: Env) -> None:
    auth = env.auth()
    created = await env.http.post(
        f"{API}/clients",
        headers=auth,
        json={
            "name": "rp",
            "client_type": "public",
            "redirect_uris": ["https://rp.example.com/cb"],
            "post_logout_redirect_uris": ["https://rp.example.com/bye"],
            "backchannel_logout_uri": "https://rp.example.com/bc",
            "backchannel_logout_session_required": True,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["post_logout_redirect_uris"] == ["https://rp.example.com/bye"]
    assert body["backchannel_logout_uri"] == "https://rp.example.com/bc"
    assert body["backchannel_logout_session_required"] is True
    one = f"{API}/clients/{body['client_id']}"
    patched = await env.http.patch(
        one, headers=auth, json={"backchannel_logout_uri": None, "post_logout_redirect_uris": []}
    )
    assert patched.status_code == 200, patched.text
    assert (
        patched.json()["backchannel_logout_uri"],
        patched.json()["post_logout_redirect_uris"],
    ) == (
        None,
        [],
    )
    bad = await env.http.patch(
        one, headers=auth, json={"post_logout_redirect_uris": ["http://rp.example.com/bye"]}
    )
    assert problem(bad, 400, "invalid_client_metadata")["detail"].startswith(
        "post_logout_redirect_uris: 'http://rp.example.com/bye' must use https"
    )
    null_flag = await env.http.patch(
        one, headers=auth, json={"backchannel_logout_session_required": None}
    )
    assert null_flag.status_code == 400
