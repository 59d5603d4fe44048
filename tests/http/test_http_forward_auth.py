"""The forward-auth decision endpoint (/auth/verify), driven through the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from http_support import client_for, make_runtime, make_settings

from bastion.audit.metrics import NO_ROUTE
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


def make_gateway(trusted: list[str], **kw: Any) -> Gateway:
    return Gateway(
        [
            edge_route("public", "/public", public=True),
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
        **kw,
    )


def _client(gateway: Gateway, family: str = "nginx") -> httpx.AsyncClient:
    settings = make_settings()
    settings.forward_auth = SimpleNamespace(headers=family)
    runtime = make_runtime(gateway=gateway, settings=settings)
    return client_for(create_app(runtime, routes=forward_auth_routes(runtime)))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGI transport calls from 127.0.0.1
    async with _client(make_gateway(["127.0.0.1"])) as c:
        yield c


@pytest.fixture
async def forwarded() -> AsyncIterator[httpx.AsyncClient]:
    """forward_auth.headers: forwarded (Caddy, Traefik)."""
    async with _client(make_gateway(["127.0.0.1"]), "forwarded") as c:
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


async def test_traefik_and_caddy_headers(forwarded: httpx.AsyncClient) -> None:
    headers = {
        "X-Forwarded-Method": "POST",
        "X-Forwarded-Uri": "/api/x",
        "X-Forwarded-Host": "api.example.com",
        "Authorization": KEY,
    }
    response = await forwarded.get("/auth/verify", headers=headers)
    assert response.status_code == 403
    assert response.json()["reason"] == "insufficient_scope"
    headers["X-Forwarded-Method"] = "GET"
    response = await forwarded.get("/auth/verify", headers=headers)
    assert response.status_code == 200
    assert response.headers["x-bastion-subject"] == "user-1"


async def test_a_traefik_shaped_request(forwarded: httpx.AsyncClient) -> None:
    # What Traefik's forwardAuth sends (trustForwardHeader: false), plus the client's headers.
    traefik = {
        "X-Forwarded-Method": "GET",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.com",
        "X-Forwarded-Uri": "/api/x?page=2",
        "X-Forwarded-For": "198.51.100.4",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Server": "traefik-1",
        "X-Real-Ip": "198.51.100.4",
        "Authorization": KEY,
    }
    response = await forwarded.get("/auth/verify", headers=traefik)
    assert response.status_code == 200
    assert response.headers["x-bastion-key-id"] == "k1"
    spoofed = await forwarded.get("/auth/verify", headers={**traefik, "X-Original-URI": "/public"})
    assert (spoofed.status_code, spoofed.json()["reason"]) == (400, "forward_auth_ambiguous")


# Issue 13: Caddy and Traefik set only X-Forwarded-Method / -Uri and pass every client header
# through, so a client-sent X-Original-* must not change (nor be ignored in) the decision.
OTHER_FAMILY = (
    "The request carries {name}, but forward_auth.headers is {family}: bastion reads the "
    "original request only from {method} and {uri}, and refuses a request that carries the "
    "other family too (a client may have sent it). Set forward_auth.headers to match your "
    "proxy (nginx: nginx; Caddy, Traefik: forwarded)."
)


async def test_forwarded_mode_refuses_a_client_sent_original_uri(
    forwarded: httpx.AsyncClient,
) -> None:
    judged = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/key/x"}
    assert (await forwarded.get("/auth/verify", headers=judged)).status_code == 401
    spoofed = {**judged, "X-Original-URI": "/public/anything"}
    response = await forwarded.get("/auth/verify", headers=spoofed)
    assert response.status_code == 400
    assert response.json()["reason"] == "forward_auth_ambiguous"
    assert response.json()["detail"] == OTHER_FAMILY.format(
        name="X-Original-URI",
        family="forwarded",
        method="X-Forwarded-Method",
        uri="X-Forwarded-Uri",
    )


async def test_forwarded_mode_refuses_a_client_sent_original_method(
    forwarded: httpx.AsyncClient,
) -> None:
    # A read-only key: DELETE is 403; a client-sent X-Original-Method: GET must not make it 200.
    judged = {"X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/api/x", "Authorization": KEY}
    response = await forwarded.get("/auth/verify", headers=judged)
    assert (response.status_code, response.json()["reason"]) == (403, "insufficient_scope")
    response = await forwarded.get("/auth/verify", headers={**judged, "X-Original-Method": "GET"})
    assert (response.status_code, response.json()["reason"]) == (400, "forward_auth_ambiguous")


async def test_nginx_mode_refuses_the_forwarded_family(client: httpx.AsyncClient) -> None:
    for name, value in (("X-Forwarded-Uri", "/public/x"), ("X-Forwarded-Method", "GET")):
        response = await client.get(
            "/auth/verify", headers=original("DELETE", "/api/x", **{name: value})
        )
        assert response.status_code == 400
        assert response.json()["reason"] == "forward_auth_ambiguous"
        assert response.json()["detail"] == OTHER_FAMILY.format(
            name=name, family="nginx", method="X-Original-Method", uri="X-Original-URI"
        )
    # Only the forwarded family, in nginx mode: refused, not judged.
    response = await client.get(
        "/auth/verify", headers={"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/public/x"}
    )
    assert (response.status_code, response.json()["reason"]) == (400, "forward_auth_ambiguous")


@pytest.mark.parametrize(
    ("family", "headers", "repeated"),
    [
        ("nginx", [("X-Original-URI", "/public/x")], "X-Original-Uri"),
        ("nginx", [("x-original-method", "GET")], "X-Original-Method"),
        (
            "nginx",
            [("X-Forwarded-Host", "a.test"), ("X-Forwarded-Host", "b.test")],
            "X-Forwarded-Host",
        ),
        ("forwarded", [("X-Forwarded-Uri", "/public/x")], "X-Forwarded-Uri"),
        ("forwarded", [("X-Forwarded-Method", "GET")], "X-Forwarded-Method"),
    ],
)
async def test_repeated_judged_headers_are_refused(
    family: str, headers: list[tuple[str, str]], repeated: str
) -> None:
    own = (
        [("X-Original-Method", "DELETE"), ("X-Original-URI", "/api/x")]
        if family == "nginx"
        else [("X-Forwarded-Method", "DELETE"), ("X-Forwarded-Uri", "/api/x")]
    )
    async with _client(make_gateway(["127.0.0.1"]), family) as c:
        response = await c.get("/auth/verify", headers=[*own, *headers, ("Authorization", KEY)])
    assert response.status_code == 400
    assert response.json()["reason"] == "forward_auth_ambiguous"
    assert response.json()["detail"] == f"The request carries more than one {repeated} header."


async def test_every_decision_is_audited_counted_and_traced_like_the_gateway() -> None:
    from bastion.audit.events import Auditor, EventTypes
    from bastion.audit.metrics import Metrics

    auditor = Auditor()
    metrics = Metrics(process=False)
    async with _client(make_gateway(["127.0.0.1"], auditor=auditor, metrics=metrics)) as c:
        denied = await c.get(
            "/auth/verify", headers=original("DELETE", "/api/x", Authorization=KEY)
        )
        allowed = await c.get("/auth/verify", headers=original("GET", "/api/x", Authorization=KEY))
        ambiguous = await c.get(
            "/auth/verify", headers=original("GET", "/api/x", **{"X-Forwarded-Uri": "/public"})
        )
    assert (denied.status_code, allowed.status_code, ambiguous.status_code) == (403, 200, 400)
    first, second = auditor.take(10)
    assert (first.type, first.outcome, first.reason) == (
        EventTypes.GATEWAY_DENIED,
        "denied",
        "insufficient_scope",
    )
    assert (first.route, first.key_id, first.subject) == ("api", "k1", "user-1")
    assert first.request_id == denied.headers["x-request-id"]
    assert first.data == {
        "status": 403,
        "step": "authorize",
        "method": "DELETE",
        "path": "/api/x",
        "door": "forward_auth",
    }
    assert (second.reason, second.route) == ("forward_auth_ambiguous", None)
    assert second.data["step"] == "forward_auth" and second.data["door"] == "forward_auth"
    traffic = {(t.route, t.principal, t.principal_id): t.count for t in auditor.traffic.take_all()}
    assert traffic == {("api", "key", "k1"): 1}
    counts = {
        (slot.label, outcome): n
        for slot in metrics._routes.values()
        for outcome, n in slot.counts().items()
    }
    assert counts == {
        ("api", "insufficient_scope"): 1,
        ("api", "allowed"): 1,
        (NO_ROUTE, "forward_auth_ambiguous"): 1,
    }


async def test_decisions_are_traced_like_the_gateway() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from bastion.audit.tracing import GatewayTracer

    exporter = InMemorySpanExporter()
    tracer = GatewayTracer(exporter, batch=False)
    async with _client(make_gateway(["127.0.0.1"], tracer=tracer)) as c:
        denied = await c.get(
            "/auth/verify", headers=original("DELETE", "/api/x", Authorization=KEY)
        )
        allowed = await c.get("/auth/verify", headers=original("GET", "/api/x", Authorization=KEY))
    tracer.shutdown()
    assert (denied.status_code, allowed.status_code) == (403, 200)
    spans = [(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()]
    assert [name for name, _ in spans] == ["gateway api", "gateway api"]
    (_, first), (_, second) = spans
    assert first["bastion.outcome"] == "insufficient_scope"
    assert first["http.response.status_code"] == 403
    assert (first["bastion.door"], first["http.request.method"]) == ("forward_auth", "DELETE")
    assert (second["bastion.outcome"], second["url.path"]) == ("allowed", "/api/x")


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
            "(forward_auth.headers is nginx).",
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
        async with _client(make_gateway(trusted)) as c:
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
