"""Audit events of the authorization server: auth.client, token.issued/refused/revoked."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import real_runtime

from bastion.audit.events import Event
from bastion.http.endpoints import create_full_app
from bastion.http.endpoints.oauth_audit import claimed_client_id
from bastion.oauth.clients import ClientSpec
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.runtime import Runtime

TOKEN = "/oauth2/token"
IP = "198.51.100.7"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with real_runtime(tmp_path, trusted_proxies=["10.9.9.9"]) as rt:
        yield rt


@pytest.fixture
def events(runtime: Runtime) -> list[Event]:
    seen: list[Event] = []
    runtime.auditor.subscribe(seen.append)
    return seen


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_full_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(IP, 4000)),
        base_url="https://testserver",
        headers={"User-Agent": "audit-test/1"},
    ) as client:
        yield client


def _of(events: list[Event], *types: str) -> list[Event]:
    return [e for e in events if e.type in types]


async def test_wrong_secret_is_one_auth_client_failure_without_the_secret(
    runtime: Runtime, http: httpx.AsyncClient, events: list[Event]
) -> None:
    client, _ = await runtime.clients.create(
        ClientSpec(name="cc", grant_types=["client_credentials"], scopes=["a"])
    )
    response = await http.post(
        TOKEN, data={"grant_type": "client_credentials"}, auth=(client.client_id, "wrong-secret")
    )
    assert response.status_code == 401
    recorded = _of(events, "auth.client", "token.issued", "token.refused")
    assert len(recorded) == 1
    event = recorded[0]
    assert (event.type, event.outcome, event.reason) == ("auth.client", "failure", "bad_secret")
    assert event.client_id == client.client_id
    assert event.ip == IP
    assert event.user_agent == "audit-test/1"
    assert event.data == {"endpoint": TOKEN}
    assert event.request_id
    assert "wrong-secret" not in repr(event)


async def test_unknown_client_id_is_recorded_as_given_but_cleaned_and_cut(
    http: httpx.AsyncClient, events: list[Event]
) -> None:
    claimed = "evil\x07" + "x" * 300
    response = await http.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": claimed, "client_secret": "s"},
    )
    assert response.status_code == 401
    (event,) = _of(events, "auth.client")
    assert event.client_id is not None
    assert event.client_id.startswith("evil?xxx")
    assert len(event.client_id) == 128
    assert event.client_id.endswith("...")


async def test_issued_and_refused_tokens(
    runtime: Runtime, http: httpx.AsyncClient, events: list[Event]
) -> None:
    client, secret = await runtime.clients.create(
        ClientSpec(name="cc", grant_types=["client_credentials"], scopes=["a"])
    )
    assert secret is not None
    auth = (client.client_id, secret)
    ok = await http.post(TOKEN, data={"grant_type": "client_credentials"}, auth=auth)
    assert ok.status_code == 200
    bad = await http.post(TOKEN, data={"grant_type": "password"}, auth=auth)
    assert bad.status_code == 400
    issued, refused = _of(events, "token.issued", "token.refused")
    assert (issued.type, issued.outcome, issued.client_id) == (
        "token.issued",
        "success",
        client.client_id,
    )
    assert issued.data["grant_type"] == "client_credentials"
    assert ok.json()["access_token"] not in repr(issued)
    assert (refused.type, refused.outcome, refused.reason) == (
        "token.refused",
        "failure",
        "unsupported_grant_type",
    )
    assert refused.data["grant_type"] == "password"
    assert _of(events, "auth.client") == []


async def test_revocation_is_recorded_and_introspection_is_not(
    runtime: Runtime, http: httpx.AsyncClient, events: list[Event]
) -> None:
    client, secret = await runtime.clients.create(
        ClientSpec(
            name="cc", grant_types=["client_credentials"], scopes=["a", "bastion:introspect"]
        )
    )
    assert secret is not None
    auth = (client.client_id, secret)
    token = (await http.post(TOKEN, data={"grant_type": "client_credentials"}, auth=auth)).json()
    events.clear()
    inactive = await http.post("/oauth2/introspect", data={"token": "nope"}, auth=auth)
    assert inactive.json() == {"active": False}
    assert events == []
    revoked = await http.post("/oauth2/revoke", data={"token": token["access_token"]}, auth=auth)
    assert revoked.status_code == 200
    (event,) = events
    assert (event.type, event.outcome, event.client_id) == (
        "token.revoked",
        "success",
        client.client_id,
    )
    assert isinstance(event.data["jti"], str) and event.data["jti"]


async def test_failed_client_auth_at_introspection_is_an_auth_client_event(
    http: httpx.AsyncClient, events: list[Event]
) -> None:
    response = await http.post("/oauth2/introspect", data={"token": "x"}, auth=("ghost", "pw"))
    assert response.status_code == 401
    (event,) = events
    assert (event.type, event.reason, event.client_id) == ("auth.client", "unknown_client", "ghost")
    assert event.data == {"endpoint": "/oauth2/introspect"}


def _request(headers: list[tuple[bytes, bytes]], body: bytes = b"") -> OAuthRequest:
    return OAuthRequest.from_http(
        "POST", [(b"content-type", b"application/x-www-form-urlencoded"), *headers], body, b""
    )


def test_claimed_client_id_reads_basic_then_form_and_never_raises() -> None:
    basic = base64.b64encode(b"svc%2B1:secret").decode()
    assert claimed_client_id(_request([(b"authorization", f"Basic {basic}".encode())])) == "svc+1"
    assert claimed_client_id(_request([], b"client_id=abc")) == "abc"
    assert claimed_client_id(_request([(b"authorization", b"Basic !!!")], b"client_id=f")) == "f"
    twice = [(b"authorization", b"Basic a"), (b"authorization", b"Basic b")]
    assert claimed_client_id(_request(twice)) is None
    assert claimed_client_id(_request([])) is None


async def test_the_client_address_is_resolved_once_per_request(
    runtime: Runtime, events: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Throttle, audit and the grant all need the address: one resolution serves them.
    from bastion.gateway import forwarded

    calls: list[object] = []
    rule = forwarded.client_ip

    def counting(scope: Any, trusted: forwarded.TrustedProxies) -> str | None:
        calls.append(scope)
        return rule(scope, trusted)

    monkeypatch.setattr(forwarded, "client_ip", counting)
    client, _ = await runtime.clients.create(
        ClientSpec(name="cc", grant_types=["client_credentials"], scopes=["a"])
    )
    transport = httpx.ASGITransport(app=create_full_app(runtime), client=("10.9.9.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        response = await http.post(
            TOKEN,
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, "wrong-secret"),
            headers={"X-Forwarded-For": "198.51.100.44"},
        )
    assert response.status_code == 401
    (event,) = _of(events, "auth.client")
    assert event.ip == "198.51.100.44"
    assert len(calls) == 1
