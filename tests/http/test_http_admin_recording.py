"""Lifecycle audit events from the admin API and the leak-report endpoint.

Every change made over HTTP puts one event on ``runtime.auditor`` naming the
admin token's subject, the action, the target and the changed field names —
and never a secret (the JSON of every event is searched for the secrets the
responses revealed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from http_support import admin_runtime
from test_http_admin_clients import API, Env, open_env
from test_http_leaks import SETTINGS as LEAK_SETTINGS
from test_http_leaks import Env as LeakEnv
from test_http_leaks import _gateway

from bastion.apikeys import ApiKeyService, ApiKeySpec
from bastion.audit.events import Auditor, Event
from bastion.storage import Database, migrate
from bastion.storage.shared import open_shared_state


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[Env]:
    e, db, shared = await open_env(sqlite_url)
    e.runtime.auditor = Auditor()
    try:
        yield e
    finally:
        await e.http.aclose()
        await shared.close()
        await db.close()


def events(auditor: Auditor) -> list[Event]:
    return auditor.take(1000)


def as_json(event: Event) -> str:
    return orjson.dumps(
        {name: getattr(event, name) for name in Event.__slots__}, default=str
    ).decode()


def summary(event: Event) -> tuple[Any, ...]:
    return (event.type, event.outcome, event.subject, event.data["action"], event.data["fields"])


async def test_client_lifecycle_events(env: Env) -> None:
    auth = env.auth(sub="ops-admin")
    created = (
        await env.http.post(
            f"{API}/clients",
            json={"name": "billing", "scopes": ["a"], "grant_types": ["client_credentials"]},
            headers=auth,
        )
    ).json()
    client_id = created["client_id"]
    one = f"{API}/clients/{client_id}"
    assert (await env.http.patch(one, json={"name": "billing-2"}, headers=auth)).status_code == 200
    rotated = (await env.http.post(f"{one}/rotate-secret", headers=auth)).json()
    assert (await env.http.post(f"{one}/disable", headers=auth)).status_code == 200
    assert (await env.http.post(f"{one}/enable", headers=auth)).status_code == 200
    assert (await env.http.delete(one, headers=auth)).status_code == 204
    # reads and refused changes record nothing
    assert (await env.http.get(f"{API}/clients", headers=auth)).status_code == 200
    assert (await env.http.post(f"{API}/clients", json={}, headers=auth)).status_code == 400

    recorded = events(env.runtime.auditor)
    actor = "admin:ops-admin"
    assert [summary(e) for e in recorded] == [
        ("client.changed", "success", actor, "created", ["grant_types", "name", "scopes"]),
        ("client.changed", "success", actor, "updated", ["name"]),
        ("client.changed", "success", actor, "secret_rotated", ["client_secret"]),
        ("client.changed", "success", actor, "disabled", ["disabled"]),
        ("client.changed", "success", actor, "enabled", ["disabled"]),
        ("client.changed", "success", actor, "deleted", []),
    ]
    for event in recorded:
        assert event.client_id == client_id
        assert event.data["target"] == client_id
        assert event.data["actor"] == actor
        assert event.request_id is not None
        assert event.ip == "127.0.0.1"
        text = as_json(event)
        for secret in (created["client_secret"], rotated["client_secret"]):
            assert secret not in text


async def test_api_key_lifecycle_events(env: Env) -> None:
    auth = env.auth(sub="key-admin")
    created = (
        await env.http.post(
            f"{API}/keys", json={"name": "ci", "scopes": ["orders:read"]}, headers=auth
        )
    ).json()
    key_id = created["id"]
    one = f"{API}/keys/{key_id}"
    assert (await env.http.patch(one, json={"name": "ci-2"}, headers=auth)).status_code == 200
    rotated = (await env.http.post(f"{one}/rotate", headers=auth)).json()
    assert (await env.http.post(f"{one}/disable", headers=auth)).status_code == 200
    assert (await env.http.post(f"{one}/enable", headers=auth)).status_code == 200
    assert (await env.http.post(f"{one}/revoke", headers=auth)).status_code == 200
    assert (await env.http.delete(one, headers=auth)).status_code == 204

    recorded = events(env.runtime.auditor)
    actor = "admin:key-admin"
    assert [summary(e) for e in recorded] == [
        ("api_key.changed", "success", actor, "created", ["name", "scopes"]),
        ("api_key.changed", "success", actor, "updated", ["name"]),
        ("api_key.changed", "success", actor, "rotated", ["grace_until"]),
        ("api_key.changed", "success", actor, "disabled", ["disabled"]),
        ("api_key.changed", "success", actor, "enabled", ["disabled"]),
        ("api_key.changed", "success", actor, "revoked", ["revoked_at"]),
        ("api_key.changed", "success", actor, "deleted", []),
    ]
    assert [e.key_id for e in recorded] == [key_id] * 7
    assert recorded[2].data["successor"] == rotated["id"]
    for event in recorded:
        text = as_json(event)
        for secret in (created["key"], rotated["key"]):
            assert secret not in text


async def test_runtime_without_auditor_records_nothing(sqlite_url: str) -> None:
    e, db, shared = await open_env(sqlite_url)
    try:
        response = await e.http.post(f"{API}/clients", json={"name": "x"}, headers=e.auth())
        assert response.status_code == 201
    finally:
        await e.http.aclose()
        await shared.close()
        await db.close()


async def test_leak_report_records_revoked_keys_only(sqlite_url: str) -> None:
    await migrate(sqlite_url)
    db = await Database.connect(sqlite_url)
    shared = await open_shared_state("memory://")
    service = ApiKeyService(db, LEAK_SETTINGS, shared)
    auditor = Auditor()
    runtime = admin_runtime(
        settings=LEAK_SETTINGS,
        db=db,
        shared=shared,
        gateway=_gateway,
        node_id="t",
        api_keys=service,
        auditor=auditor,
    )
    env = LeakEnv(service, runtime)
    try:
        record, key = await service.create(ApiKeySpec(name="leaky"))
        unknown = key[:-8] + "AAAAAAAA"
        response = await env.post(
            [
                {"token": key, "type": "bastion_api_key", "source": "github"},
                {"token": "not-a-key"},
                {"token": unknown},
            ]
        )
        assert response.status_code == 200
        # reported again: already revoked, still recorded (a repeated leak is news)
        await env.post([{"token": key, "source": "github"}])
        first, second = events(auditor)
        assert (first.type, first.outcome, first.reason, first.key_id, first.subject) == (
            "api_key.leaked",
            "success",
            "revoked",
            record.id,
            "leak-report",
        )
        assert first.data == {
            "action": "revoked",
            "actor": "leak-report",
            "target": record.id,
            "prefix": record.prefix,
            "status": "revoked",
            "source": "github",
        }
        assert (second.reason, second.key_id) == ("already_revoked", record.id)
        for event in (first, second):
            assert key not in as_json(event)
            assert event.request_id is not None
    finally:
        await env.http.aclose()
        await shared.close()
        await db.close()
