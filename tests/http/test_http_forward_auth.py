"""The forward-auth decision endpoint (/auth/verify), driven through the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from http_support import client_for, make_runtime

from bastion.gateway.authn.identity import Identity
from bastion.gateway.errors import UnauthenticatedError
from bastion.gateway.pipeline import Exchange, Gateway
from bastion.http.app import create_app
from bastion.http.endpoints.forward_auth import forward_auth_routes, original_scope
from gateway.edge_support import edge_route

KEY = "Bearer good"


async def key_reader(ex: Exchange) -> Identity | None:
    for name, value in ex.scope["headers"]:
        if name == b"authorization":
            if value.decode() != KEY:
                raise UnauthenticatedError("bad key")
            return Identity(
                method="api_key", subject="user-1", scopes=frozenset({"read"}), key_id="k1"
            )
    return None


def make_gateway(trusted: list[str]) -> Gateway:
    return Gateway(
        [
            edge_route(
                "api",
                "/api",
                public=False,
                auth=["api_key"],
                scopes={"GET": ["read"], "*": ["write"]},
                cors={"origins": ["https://app.example.com"]},
                max_body=1,
                ip={"deny": ["192.0.2.0/24"]},
            ),
        ],
        authenticators={"api_key": key_reader},
        trusted_proxies=trusted,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    gateway = make_gateway(["127.0.0.1"])  # httpx's ASGI transport calls from 127.0.0.1
    runtime = make_runtime(gateway=gateway)
    async with client_for(create_app(runtime, routes=forward_auth_routes(runtime))) as c:
        yield c


def original(method: str, uri: str, **extra: str) -> dict[str, str]:
    return {"X-Original-Method": method, "X-Original-URI": uri, **extra}


async def test_allowed_returns_identity_headers(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/auth/verify", headers=original("GET", "/api/x?q=1", Authorization=KEY)
    )
    assert response.status_code == 200
    assert response.headers["x-bastion-subject"] == "user-1"
    assert response.headers["x-bastion-scopes"] == "read"
    assert response.headers["x-bastion-key-id"] == "k1"
    assert response.headers["x-bastion-request-id"] == response.headers["x-request-id"]
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b""


async def test_traefik_and_caddy_headers(client: httpx.AsyncClient) -> None:
    headers = {
        "X-Forwarded-Method": "POST",
        "X-Forwarded-Uri": "/api/x",
        "X-Forwarded-Host": "api.example.com",
        "Authorization": KEY,
    }
    response = await client.get("/auth/verify", headers=headers)
    assert response.status_code == 403
    assert response.json()["reason"] == "insufficient_scope"


async def test_denials(client: httpx.AsyncClient) -> None:
    missing = await client.get("/auth/verify", headers=original("GET", "/api"))
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="bastion"'
    bad = await client.get("/auth/verify", headers=original("GET", "/api", Authorization="x"))
    assert bad.status_code == 401
    nowhere = await client.get("/auth/verify", headers=original("GET", "/nowhere"))
    assert nowhere.status_code == 404
    assert nowhere.json()["reason"] == "route_not_found"


async def test_ip_rules_apply_to_the_forwarded_client(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/auth/verify",
        headers=original("GET", "/api", Authorization=KEY, **{"X-Forwarded-For": "192.0.2.5"}),
    )
    assert response.status_code == 403
    assert response.json()["reason"] == "ip_not_allowed"


async def test_cors_and_body_steps_are_not_run(client: httpx.AsyncClient) -> None:
    # A preflight is not answered 2xx (the proxy would pass it on as allowed): it is judged
    # as an OPTIONS request, which the route does not authorize without a credential.
    preflight = original(
        "OPTIONS",
        "/api",
        Origin="https://app.example.com",
        **{"Access-Control-Request-Method": "GET"},
    )
    response = await client.get("/auth/verify", headers=preflight)
    assert response.status_code == 401
    # Body size is the proxy's business: a body on the decision request is not judged.
    body = await client.request(
        "GET", "/auth/verify", headers=original("GET", "/api", Authorization=KEY), content=b"12345"
    )
    assert body.status_code == 200


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (
            {},
            "Say which request to judge: send X-Original-Method and X-Original-URI "
            "(or X-Forwarded-Method and X-Forwarded-Uri).",
        ),
        ({"X-Original-Method": "GET"}, None),
        (
            {"X-Original-Method": "get", "X-Original-URI": "/api"},
            "The original method is not an upper-case HTTP method.",
        ),
        (
            {"X-Original-Method": "GET", "X-Original-URI": "api"},
            "The original URI is not an origin-form path.",
        ),
        (
            {"X-Original-Method": "GET", "X-Original-URI": "http://evil/api"},
            "The original URI is not an origin-form path.",
        ),
        (
            {"X-Original-Method": "GET", "X-Original-URI": "/" + "a" * 9000},
            "The original URI is not an origin-form path.",
        ),
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, headers: dict[str, str], detail: str | None
) -> None:
    response = await client.get("/auth/verify", headers=headers)
    assert response.status_code == 400
    assert response.json()["reason"] == "forward_auth_bad_request"
    if detail is not None:
        assert response.json()["detail"] == detail


async def test_untrusted_callers_are_refused() -> None:
    for trusted in ([], ["10.0.0.0/8"]):
        runtime = make_runtime(gateway=make_gateway(trusted))
        async with client_for(create_app(runtime, routes=forward_auth_routes(runtime))) as c:
            response = await c.get(
                "/auth/verify", headers=original("GET", "/api", Authorization=KEY)
            )
        assert response.status_code == 403
        assert response.json()["reason"] == "forward_auth_untrusted"
        assert response.json()["detail"] == (
            "Only a proxy listed in trusted_proxies may ask for forward-auth decisions."
        )


def test_original_scope_replaces_host_and_drops_meta_headers() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": "/auth/verify",
        "headers": [
            (b"host", b"bastion.internal"),
            (b"x-original-method", b"DELETE"),
            (b"x-original-uri", b"/a%20b/c?x=1&y=2"),
            (b"x-forwarded-host", b"api.example.com"),
            (b"authorization", b"Bearer t"),
        ],
    }
    out = original_scope(scope)
    assert out["method"] == "DELETE"
    assert (out["raw_path"], out["path"], out["query_string"]) == (
        b"/a%20b/c",
        "/a b/c",
        b"x=1&y=2",
    )
    assert out["headers"] == [
        (b"x-forwarded-host", b"api.example.com"),
        (b"authorization", b"Bearer t"),
        (b"host", b"api.example.com"),
    ]
    assert scope["method"] == "GET"  # the caller's scope is untouched
