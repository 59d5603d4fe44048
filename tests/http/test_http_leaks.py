"""The leak-report endpoint over HTTP: signed reports revoke found keys; nothing echoes a key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from http_support import admin_runtime

from bastion.apikeys import ApiKeyService, ApiKeySpec, InvalidApiKeyError
from bastion.http.app import create_app, is_reserved
from bastion.http.endpoints import standard_routes
from bastion.http.endpoints.leaks import (
    LEAKS_PATH,
    MAX_REPORT_BYTES,
    SIGNATURE_HEADER,
    leak_routes,
    sign_leak_report,
)
from bastion.settings import Settings
from bastion.storage import Database, migrate
from bastion.storage.shared import open_shared_state

SECRET = "leak-report-shared-secret-0123456789"
SETTINGS = Settings.model_validate({"api_keys": {"leak_report_secret": SECRET}})


async def _gateway(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - unused
    raise AssertionError("leak reports must never reach the gateway")


class Env:
    def __init__(self, service: ApiKeyService, runtime: Any) -> None:
        self.service = service
        self.runtime = runtime
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime, routes=leak_routes(runtime))),
            base_url="https://testserver",
        )

    async def post(
        self,
        body: Any,
        *,
        secret: str = SECRET,
        signature: str | None = None,
        content_type: str = "application/json",
    ) -> httpx.Response:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {"content-type": content_type}
        headers[SIGNATURE_HEADER] = signature or sign_leak_report(raw, secret)
        return await self.http.post(LEAKS_PATH, content=raw, headers=headers)


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    await migrate(sqlite_url)
    db = await Database.connect(sqlite_url)
    shared = await open_shared_state("memory://")
    service = ApiKeyService(db, SETTINGS, shared)
    runtime = admin_runtime(
        settings=SETTINGS, db=db, shared=shared, gateway=_gateway, node_id="t", api_keys=service
    )
    e = Env(service, runtime)
    try:
        yield e
    finally:
        await e.http.aclose()
        await shared.close()
        await db.close()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_found_keys_are_revoked_and_labelled(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    live, live_key = await env.service.create(ApiKeySpec(name="live"))
    revoked, revoked_key = await env.service.create(ApiKeySpec(name="old"))
    revoked = await env.service.revoke(revoked.id)
    other, other_key = await env.service.create(ApiKeySpec(name="untouched"))
    bad_checksum = live_key[:-1] + ("A" if live_key[-1] != "A" else "B")
    unknown_key = (await env.service.create(ApiKeySpec(name="gone")))[1]
    await env.service.delete((await env.service.list()).items[-1].id)
    report = [
        {"token": live_key, "type": "bastion_api_key", "url": "https://github.com/x/y/blob/z"},
        {"token": revoked_key, "type": "bastion_api_key", "source": "content"},
        {"token": bad_checksum, "type": "bastion_api_key", "source": "content"},
        {"token": unknown_key, "type": "bastion_api_key", "source": "commit"},
        {"token": "hello", "extra_member": True},
    ]
    with caplog.at_level(logging.DEBUG):
        response = await env.post(report)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == [
        {"token_hash": sha256(live_key), "token_type": "bastion_api_key", "label": "true_positive"},
        {
            "token_hash": sha256(revoked_key),
            "token_type": "bastion_api_key",
            "label": "true_positive",
        },
        {
            "token_hash": sha256(bad_checksum),
            "token_type": "bastion_api_key",
            "label": "false_positive",
        },
        {
            "token_hash": sha256(unknown_key),
            "token_type": "bastion_api_key",
            "label": "false_positive",
        },
        {"token_hash": sha256("hello"), "token_type": None, "label": "false_positive"},
    ]
    with pytest.raises(InvalidApiKeyError) as caught:
        await env.service.verify(live_key)
    assert caught.value.reason == "revoked"
    # Already revoked: labelled a true positive, its first revocation time kept.
    assert (await env.service.get(revoked.id)).revoked_at == revoked.revoked_at
    assert (await env.service.verify(other_key)).id == other.id
    # No key in the response or any log line.
    for key in (live_key, revoked_key, bad_checksum, unknown_key, other_key):
        assert key not in response.text
        assert key not in caplog.text
    assert "leak report: 5 key(s) reported, 2 were bastion keys and are revoked" in caplog.text
    assert live.id in caplog.text


async def test_reports_are_idempotent(env: Env) -> None:
    _, key = await env.service.create(ApiKeySpec(name="k"))
    first = await env.post([{"token": key}])
    again = await env.post([{"token": key}, {"token": key}])
    assert first.json()[0]["label"] == "true_positive"
    assert [item["label"] for item in again.json()] == ["true_positive", "true_positive"]


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing_signature"),
        ("sha256=" + "0" * 64, "malformed_signature"),
        ("sha1=" + "0" * 40, "malformed_signature"),
        ("sha256=zz", "malformed_signature"),
        ("t=1,sha256=zz", "malformed_signature"),
        ("t=1765000000,sha256=" + "0" * 64, "bad_signature"),
    ],
)
async def test_unsigned_or_badly_signed_reports_are_refused(
    env: Env, signature: str | None, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = await env.service.create(ApiKeySpec(name="k"))
    raw = orjson.dumps([{"token": key}])
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    with caplog.at_level(logging.INFO):
        response = await env.http.post(LEAKS_PATH, content=raw, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["reason"] == "invalid_signature"
    assert body["detail"] == (
        "sign each report when sending it: X-Bastion-Signature: t=<unix time>,sha256=<hex "
        'HMAC-SHA256 of "<t>." followed by the raw body, under the shared leak-report secret>'
    )
    assert response.headers["www-authenticate"].startswith("HMAC-SHA256 ")
    assert f"leak report refused: {reason}" in caplog.text
    assert (await env.service.verify(key)).revoked_at is None


async def test_the_body_signed_alone_is_refused(env: Env) -> None:
    # The format before timestamps: HMAC of the body only.
    _, key = await env.service.create(ApiKeySpec(name="k"))
    raw = orjson.dumps([{"token": key}])
    digest = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    response = await env.post(raw, signature=f"sha256={digest}")
    assert (response.status_code, response.json()["reason"]) == (401, "invalid_signature")
    assert (await env.service.verify(key)).revoked_at is None


@pytest.mark.parametrize("offset", [-301, 301, -(10**6)])
async def test_a_stale_timestamp_is_refused(
    env: Env, offset: int, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = await env.service.create(ApiKeySpec(name="k"))
    raw = orjson.dumps([{"token": key}])
    when = int(time.time()) + offset
    with caplog.at_level(logging.INFO):
        response = await env.post(raw, signature=sign_leak_report(raw, SECRET, timestamp=when))
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_signature"
    assert response.json()["detail"].startswith(
        f"the signature's timestamp t={when} is more than 300 s away from the server's clock;"
    )
    assert "leak report refused: expired_signature" in caplog.text
    assert (await env.service.verify(key)).revoked_at is None


async def test_a_timestamp_within_five_minutes_is_accepted(env: Env) -> None:
    _, key = await env.service.create(ApiKeySpec(name="k"))
    raw = orjson.dumps([{"token": key}])
    signature = sign_leak_report(raw, SECRET, timestamp=int(time.time()) - 290)
    response = await env.post(raw, signature=signature)
    assert response.status_code == 200
    assert response.json()[0]["label"] == "true_positive"


async def test_a_replayed_request_is_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    _, key = await env.service.create(ApiKeySpec(name="k"))
    raw = orjson.dumps([{"token": key}])
    now = int(time.time())
    signature = sign_leak_report(raw, SECRET, timestamp=now)
    assert (await env.post(raw, signature=signature)).status_code == 200
    with caplog.at_level(logging.INFO):
        again = await env.post(raw, signature=signature)
    assert again.status_code == 401
    assert again.json()["reason"] == "invalid_signature"
    assert again.json()["detail"].startswith("this signed report was already received;")
    assert "leak report refused: replayed_signature" in caplog.text
    # Signed anew (another timestamp), the same report is accepted (reports are idempotent).
    anew = sign_leak_report(raw, SECRET, timestamp=now - 1)
    assert (await env.post(raw, signature=anew)).status_code == 200


async def test_signature_under_another_secret_or_of_another_body(env: Env) -> None:
    _, key = await env.service.create(ApiKeySpec(name="k"))
    assert (await env.post([{"token": key}], secret="other")).status_code == 401
    other_signature = sign_leak_report(b"[]", SECRET)
    assert (await env.post([{"token": key}], signature=other_signature)).status_code == 401
    await env.service.verify(key)


@pytest.mark.parametrize(
    ("body", "status", "reason", "detail"),
    [
        (b"not json", 400, "invalid_request", "the body is not JSON"),
        (
            {"token": "x"},
            400,
            "invalid_request",
            'the body must be a JSON array of {"token": ...} objects',
        ),
        ([{"type": "x"}], 400, "invalid_request", "[0].token: Field required"),
        ([{"token": 5}], 400, "invalid_request", "[0].token: Input should be a valid string"),
        ([{"token": ""}], 400, "invalid_request", None),
        ([{"token": "x"}] * 1001, 400, "invalid_request", "report at most 1000 keys per request"),
    ],
)
async def test_invalid_reports(
    env: Env, body: Any, status: int, reason: str, detail: str | None
) -> None:
    response = await env.post(body)
    assert response.status_code == status, response.text
    assert response.json()["reason"] == reason
    if detail is not None:
        assert response.json()["detail"] == detail


async def test_a_thousand_keys_are_accepted(env: Env) -> None:
    response = await env.post([{"token": f"bst_{i:038d}"} for i in range(1000)])
    assert response.status_code == 200
    assert len(response.json()) == 1000
    assert {item["label"] for item in response.json()} == {"false_positive"}


async def test_wrong_media_type(env: Env) -> None:
    response = await env.post([{"token": "x"}], content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["reason"] == "unsupported_media_type"


async def test_body_cap(env: Env) -> None:
    big = b"[" + b" " * MAX_REPORT_BYTES + b"]"
    response = await env.post(big)
    assert response.status_code == 413
    assert response.json()["reason"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(17):
            yield b" " * 65536

    # Streamed without Content-Length: cut off at the cap as well.
    response = await env.http.post(
        LEAKS_PATH,
        content=chunks(),
        headers={"content-type": "application/json", SIGNATURE_HEADER: "sha256=" + "0" * 64},
    )
    assert response.status_code == 413


async def test_only_post(env: Env) -> None:
    response = await env.http.get(LEAKS_PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_absent_without_a_configured_secret(sqlite_url: str) -> None:
    runtime = admin_runtime(
        settings=Settings(), db=None, shared=None, gateway=_gateway, node_id="t"
    )
    assert leak_routes(runtime) == []
    app = create_app(runtime, routes=leak_routes(runtime))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://testserver"
    ) as http:
        response = await http.post(LEAKS_PATH, json=[{"token": "x"}])
    assert response.status_code == 404
    assert response.json()["reason"] == "not_found"


def test_reserved_and_mounted_by_standard_routes() -> None:
    assert is_reserved(LEAKS_PATH)
    assert not is_reserved("/api-keys/other")
    assert not is_reserved("/api-keys")
    runtime = admin_runtime(
        settings=SETTINGS,
        db=None,
        shared=None,
        gateway=_gateway,
        node_id="t",
        api_keys=object(),
        token_endpoint=SimpleNamespace(grant_types=("client_credentials",)),
        signing_keys=SimpleNamespace(current=lambda: None),
        auditor=None,
        client_throttle=None,
        metrics=None,
    )
    paths = [getattr(route, "path", None) for route in standard_routes(runtime)]
    assert LEAKS_PATH in paths
