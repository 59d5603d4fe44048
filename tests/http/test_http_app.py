"""create_app: dispatch between bastion's endpoints and the gateway, health probes, lifespan."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from http_support import Ping, client_for, make_runtime

from bastion.errors import BastionError
from bastion.http.app import RESERVED_PREFIXES, create_app, is_reserved
from bastion.http.errors import UnsupportedScopeError
from bastion.http.health import run_checks
from bastion.storage.errors import DatabaseUnavailableError, SharedStateUnavailableError


async def test_healthz(client: Any) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert "content-security-policy" not in response.headers
    assert response.headers["x-request-id"]


async def test_healthz_calls_no_dependency() -> None:
    runtime = make_runtime(db=Ping(DatabaseUnavailableError("down")))
    async with client_for(create_app(runtime)) as client:
        assert (await client.get("/healthz")).status_code == 200
    assert runtime.db.calls == 0


async def test_head_healthz_and_readyz(client: Any) -> None:
    for path in ("/healthz", "/readyz"):
        response = await client.head(path)
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"


async def test_readyz_ok(client: Any, runtime: Any) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "shared_state": "ok", "change_feed": "ok"},
    }
    assert runtime.db.calls == 1 and runtime.shared.calls == 1 and runtime.changes.calls == 1


async def test_readyz_change_feed_stale() -> None:
    from bastion.storage.errors import ChangeFeedStaleError

    stale = ChangeFeedStaleError("change feed not read for over 2 s (changes made elsewhere …)")
    async with client_for(create_app(make_runtime(changes=Ping(stale)))) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["detail"] == "not ready: change_feed failing"
    assert body["checks"]["change_feed"].startswith("change feed not read for over 2 s")


async def test_readyz_database_down() -> None:
    runtime = make_runtime(
        db=Ping(DatabaseUnavailableError("database unreachable: connection refused\nmore"))
    )
    async with client_for(create_app(runtime)) as client:
        response = await client.get("/readyz", headers={"x-request-id": "probe-1"})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["retry-after"] == "1"
    assert response.json() == {
        "type": "urn:bastion:problem:not_ready",
        "title": "Not ready",
        "status": 503,
        "detail": "not ready: database failing",
        "reason": "not_ready",
        "checks": {
            "database": "database unreachable: connection refused",
            "shared_state": "ok",
            "change_feed": "ok",
        },
        "request_id": "probe-1",
    }


async def test_readyz_both_down_and_unexpected_errors_hide_their_text() -> None:
    runtime = make_runtime(
        db=Ping(RuntimeError("postgresql://bastion:s3cret@db/bastion")),
        shared=Ping(SharedStateUnavailableError("redis unreachable")),
    )
    async with client_for(create_app(runtime)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["detail"] == "not ready: database, shared_state failing"
    assert body["checks"] == {
        "database": "unexpected RuntimeError",
        "shared_state": "redis unreachable",
        "change_feed": "ok",
    }
    assert "s3cret" not in response.text


async def test_readiness_checks_time_out_and_run_concurrently() -> None:
    slow, fast = Ping(delay=5), Ping(delay=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await run_checks({"database": slow.ping, "shared_state": fast.ping}, timeout=0.2)
    assert loop.time() - started < 1
    assert results == {"database": "no answer within 0.2 s", "shared_state": "ok"}


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/admin/nope",
        "/.well-known/nope",
        "/oauth2/token",
        "/metrics",
        "/auth/verify",
    ],
)
async def test_unknown_paths_under_reserved_prefixes_are_problem_404(
    client: Any, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["reason"] == "not_found"


async def call_raw(app: Any, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call the app with a scope whose path is exactly ``path`` (clients normalise it)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "https",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 5000),
    }
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


@pytest.mark.parametrize(
    "path", ["//admin", "/x/../admin/users", "/./login", "/api/..//metrics", "/.well-known"]
)
async def test_non_canonical_reserved_paths_never_reach_the_gateway(path: str) -> None:
    status, headers, body = await call_raw(create_app(make_runtime()), path)
    assert status == 404
    assert headers[b"content-type"] == b"application/problem+json"
    assert b'"reason":"not_found"' in body


async def test_non_canonical_path_to_a_bastion_endpoint_is_served() -> None:
    status, _, body = await call_raw(create_app(make_runtime()), "//healthz")
    assert (status, body) == (200, b'{"status":"ok"}')


async def test_method_not_allowed_is_problem_405(client: Any) -> None:
    response = await client.post("/healthz")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET, HEAD"
    assert response.json()["reason"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path", ["/", "/api/orders", "/administrator", "/healthzz", "/auth/other", "/authverify"]
)
async def test_everything_else_is_the_native_gateways_503_here(client: Any, path: str) -> None:
    # The native core serves gateway paths; one reaching the app is refused, never judged.
    response = await client.get(path)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["reason"] == "gateway_unavailable"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_reserved_prefix_table() -> None:
    assert RESERVED_PREFIXES == (
        "/healthz", "/readyz", "/.well-known", "/oauth2", "/login", "/logout", "/mfa",
        "/consent", "/account", "/admin", "/auth/verify", "/metrics", "/api-keys/leaks",
    )  # fmt: skip
    assert is_reserved("/login") and is_reserved("/login/x") and not is_reserved("/loginx")
    assert is_reserved("/auth/verify/x") and not is_reserved("/auth")
    assert is_reserved("//metrics") and not is_reserved("//api")


def test_routes_outside_reserved_prefixes_are_refused() -> None:
    from starlette.routing import Route

    with pytest.raises(ValueError, match="outside bastion's reserved prefixes"):
        create_app(make_runtime(), routes=[Route("/api/x", lambda r: None)])


async def test_extra_routes_are_served() -> None:
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def login(request: Any) -> HTMLResponse:
        return HTMLResponse("<p>login</p>")

    app = create_app(make_runtime(), routes=[Route("/login", login)])
    async with client_for(app) as client:
        response = await client.get("/login")
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def lifespan(app: Any) -> list[dict[str, Any]]:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent


async def test_lifespan_calls_runtime_hooks() -> None:
    calls: list[str] = []

    async def startup() -> None:
        calls.append("startup")

    async def shutdown() -> None:
        calls.append("shutdown")

    app = create_app(make_runtime(startup=startup, shutdown=shutdown))
    assert await lifespan(app) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]
    assert calls == ["startup", "shutdown"]


async def test_lifespan_without_hooks() -> None:
    assert await lifespan(create_app(make_runtime())) == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


async def test_lifespan_startup_failure_is_reported() -> None:
    class UpstreamDownError(BastionError):
        code = "upstream_down"

    async def startup() -> None:
        raise UpstreamDownError("upstream pool cannot start\ndetails")

    sent = await lifespan(create_app(make_runtime(startup=startup)))
    assert sent == [{"type": "lifespan.startup.failed", "message": "upstream pool cannot start"}]


async def test_unknown_scope_type_is_refused() -> None:
    app = create_app(make_runtime())
    with pytest.raises(UnsupportedScopeError, match="ASGI scope type 'webtransport'"):
        await app({"type": "webtransport"}, None, None)  # type: ignore[arg-type]
