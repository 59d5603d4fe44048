"""The api_key method through the Gateway: the REAL ApiKeyService on a migrated SQLite database.

Hand-built ASGI scopes drive the gateway; the echo upstream shows what was forwarded.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bastion.apikeys import (
    ApiKeyInQueryError,
    ApiKeyIPNotAllowedError,
    ApiKeyService,
    ApiKeySpec,
    InvalidApiKeyError,
)
from bastion.demo.echo import EchoServer
from bastion.gateway import (
    STEPS,
    ApiKeyAuthenticator,
    Exchange,
    Gateway,
    Identity,
    RouteNotAllowedError,
    Step,
    UnauthenticatedError,
)
from bastion.gateway.authn import client_ip, key_in_query
from bastion.gateway.proxy import TrustedProxies
from bastion.http.problem import problem_response
from bastion.settings import RouteMatch, RouteSettings, Settings
from bastion.storage import Database
from bastion.storage.models import utcnow
from bastion.storage.shared import SharedState, open_shared_state
from gateway.gateway_support import Result, call

INVALID = "the API key is not valid"
IN_QUERY = (
    "API keys are accepted only in request headers (Authorization: Bearer, or the route's API "
    "key header), never in the query string: URLs end up in logs, browser history and Referer "
    "headers. Revoke or rotate a key that was sent there."
)


@pytest.fixture
async def service(migrated_sqlite_file: Path, tmp_path: Path) -> AsyncIterator[ApiKeyService]:
    path = tmp_path / "bastion.db"
    shutil.copyfile(migrated_sqlite_file, path)
    db = await Database.connect(f"sqlite:///{path}")
    shared: SharedState = await open_shared_state("memory://")
    try:
        yield ApiKeyService(db, Settings(), shared)
    finally:
        await shared.close()
        await db.close()


def api_route(name: str, path: str, upstream: str, **kw: Any) -> RouteSettings:
    kw.setdefault("auth", ["api_key"])
    return RouteSettings(name=name, match=RouteMatch(path=path), upstream=upstream, **kw)


async def new_key(service: ApiKeyService, **spec: Any) -> tuple[str, str]:
    spec.setdefault("name", "test key")
    record, key = await service.create(ApiKeySpec(**spec))
    return record.id, key


def bearer(key: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {key}")


def tamper(key: str) -> str:
    """``key`` with its last character changed: the checksum no longer matches."""
    return key[:-1] + ("A" if key[-1] != "A" else "B")


async def denied(gateway: Gateway, path: str = "/api/x", **kw: Any) -> BaseException:
    with pytest.raises(
        (InvalidApiKeyError, ApiKeyInQueryError, ApiKeyIPNotAllowedError, UnauthenticatedError)
    ) as e:
        await call(gateway, "GET", path, **kw)
    return e.value


# -- allow -----------------------------------------------------------------------------------


async def test_valid_bearer_key_is_proxied_without_the_key(
    service: ApiKeyService, echo: EchoServer
) -> None:
    key_id, key = await new_key(service, scopes=["orders:read"])
    seen: list[Identity | None] = []

    async def spy(ex: Exchange) -> None:
        seen.append(ex.identity)

    steps = (*STEPS[:-1], Step("spy", spy), STEPS[-1])
    gateway = Gateway([api_route("api", "/api", echo.url)], api_keys=service, steps=steps)
    result = await call(gateway, "GET", "/api/orders", headers=[bearer(key), ("x-trace", "t1")])
    assert result.status == 200
    received = echo.received[-1]
    assert received.header("authorization") is None
    assert received.header("x-trace") == "t1"
    assert key not in repr(received.headers) and key.encode() not in result.body
    assert seen == [
        Identity(
            method="api_key",
            subject=f"apikey:{key_id}",
            scopes=frozenset({"orders:read"}),
            claims={"key_id": key_id, "key_prefix": key[: len("bst_") + 6]},
            key_id=key_id,
            routes=None,
        )
    ]
    await gateway.shutdown()


async def test_owned_key_subject_and_case_insensitive_scheme(
    service: ApiKeyService, echo: EchoServer
) -> None:
    key_id, key = await new_key(service, owner_type="user", owner_id="alice")
    identities: list[Identity] = []

    async def spy(ex: Exchange) -> None:
        assert ex.identity is not None
        identities.append(ex.identity)

    steps = (*STEPS[:-1], Step("spy", spy), STEPS[-1])
    gateway = Gateway([api_route("api", "/api", echo.url)], api_keys=service, steps=steps)
    result = await call(gateway, "GET", "/api", headers=[("Authorization", f"bEaReR   {key} ")])
    assert result.status == 200
    assert identities[0].subject == "user:alice"
    assert identities[0].key_id == key_id
    await gateway.shutdown()


async def test_configured_header_is_read_and_stripped(
    service: ApiKeyService, echo: EchoServer
) -> None:
    _, key = await new_key(service)
    gateway = Gateway(
        [api_route("api", "/api", echo.url, api_key_header="X-API-Key")], api_keys=service
    )
    result = await call(gateway, "GET", "/api", headers=[("x-api-key", key)])
    assert result.status == 200
    assert echo.received[-1].header("x-api-key") is None
    # the configured header is dedicated to keys: anything in it is verified
    error = await denied(gateway, "/api", headers=[("x-api-key", "not-a-key")])
    assert isinstance(error, InvalidApiKeyError) and error.reason == "malformed"
    # Authorization: Bearer bst_… still works on such a route
    result = await call(gateway, "GET", "/api", headers=[bearer(key)])
    assert result.status == 200
    assert echo.received[-1].header("authorization") is None
    await gateway.shutdown()


async def test_a_bearer_token_that_is_no_key_is_left_to_the_next_method(
    service: ApiKeyService, echo: EchoServer
) -> None:
    async def jwt(ex: Exchange) -> Identity | None:
        return Identity(method="jwt", subject="svc")

    gateway = Gateway(
        [api_route("api", "/api", echo.url, auth=["api_key", "jwt"])],
        api_keys=service,
        authenticators={"jwt": jwt},
    )
    result = await call(gateway, "GET", "/api", headers=[("authorization", "Bearer eyJhbGc.x.y")])
    assert result.status == 200
    # not the api_key method's credential: not its business to strip (the jwt method's is)
    assert echo.received[-1].header("authorization") == "Bearer eyJhbGc.x.y"
    await gateway.shutdown()


async def test_no_key_on_an_api_key_route_is_unauthenticated(
    service: ApiKeyService, echo: EchoServer
) -> None:
    gateway = Gateway([api_route("api", "/api", echo.url)], api_keys=service)
    for headers in ([], [("authorization", "Basic dXNlcjpwdw==")], [("authorization", "Bearer")]):
        error = await denied(gateway, "/api", headers=headers)
        assert type(error) is UnauthenticatedError
        assert error.detail == "This route requires authentication."
    assert echo.connections == 0


async def test_explicit_authenticator_wins_over_api_keys(service: ApiKeyService) -> None:
    async def mine(ex: Exchange) -> Identity | None:
        return None

    gateway = Gateway([], api_keys=service, authenticators={"api_key": mine})
    assert gateway.authenticators["api_key"] is mine
    assert "api_key" not in gateway.screens
    assert isinstance(Gateway([], api_keys=service).authenticators["api_key"], ApiKeyAuthenticator)
    assert Gateway([]).authenticators == {}


# -- deny ------------------------------------------------------------------------------------


def rendered(error: BaseException) -> tuple[int, dict[str, str], bytes]:
    assert isinstance(error, InvalidApiKeyError | ApiKeyIPNotAllowedError)
    status, headers, body = problem_response(error, "req-1")
    return status, {k.decode(): v.decode() for k, v in headers}, body


async def test_bad_checksum_and_unknown_look_identical(
    service: ApiKeyService, echo: EchoServer
) -> None:
    _, key = await new_key(service)
    _, other = await new_key(service)
    await service.delete((await service.verify(other)).id)
    gateway = Gateway([api_route("api", "/api", echo.url)], api_keys=service)
    bad = await denied(gateway, headers=[bearer(tamper(key))])
    unknown = await denied(gateway, headers=[bearer(other)])
    assert isinstance(bad, InvalidApiKeyError) and bad.reason == "bad_checksum"
    assert isinstance(unknown, InvalidApiKeyError) and unknown.reason == "unknown"
    assert rendered(bad) == rendered(unknown)
    status, headers, body = rendered(bad)
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer realm="bastion", error="invalid_token"'
    assert b'"detail":"the API key is not valid"' in body and b'"reason":"invalid_api_key"' in body
    assert key[:-1].encode() not in body
    assert echo.connections == 0


@pytest.mark.parametrize("state", ["revoked", "disabled", "expired"])
async def test_revoked_disabled_expired_are_refused(
    service: ApiKeyService, echo: EchoServer, state: str
) -> None:
    key_id, key = await new_key(service)
    gateway = Gateway([api_route("api", "/api", echo.url)], api_keys=service)
    assert (await call(gateway, "GET", "/api", headers=[bearer(key)])).status == 200
    if state == "revoked":
        await service.revoke(key_id)
    elif state == "disabled":
        await service.disable(key_id)
    else:
        await service.update(key_id, expires_at=utcnow() + timedelta(milliseconds=50))
        # expiry is checked against the clock on every request, not when the cache refreshes

        await asyncio.sleep(0.1)
    error = await denied(gateway, headers=[bearer(key)])
    assert isinstance(error, InvalidApiKeyError)
    assert (error.reason, error.status, error.detail) == (state, 401, INVALID)
    await gateway.shutdown()


async def test_rotation_without_grace_ends_the_old_key(
    service: ApiKeyService, echo: EchoServer
) -> None:
    key_id, old = await new_key(service)
    _, new = await service.rotate(key_id, grace=0)
    gateway = Gateway([api_route("api", "/api", echo.url)], api_keys=service)
    assert (await call(gateway, "GET", "/api", headers=[bearer(new)])).status == 200
    error = await denied(gateway, headers=[bearer(old)])
    assert isinstance(error, InvalidApiKeyError) and error.reason == "grace_ended"
    await gateway.shutdown()


@pytest.mark.parametrize(
    "query",
    [
        "api_key={key}",
        "x=1&key={key}",
        "k={pct}",  # percent-encoded "_" hides nothing
        "k=bst_abcdefghijklmnopqrst",  # key-shaped, even if not a real key
    ],
)
async def test_a_key_in_the_query_string_is_refused_whatever_else_is_sent(
    service: ApiKeyService, echo: EchoServer, query: str
) -> None:
    _, key = await new_key(service)

    async def jwt(ex: Exchange) -> Identity | None:
        return Identity(method="jwt", subject="svc")

    gateway = Gateway(
        [
            api_route("api", "/api", echo.url),
            api_route("both", "/both", echo.url, auth=["jwt", "api_key"]),
        ],
        api_keys=service,
        authenticators={"jwt": jwt},
    )
    text = query.format(key=key, pct=key.replace("_", "%5F"))
    for path in ("/api", "/both"):
        error = await denied(gateway, path, query=text.encode(), headers=[bearer(key)])
        assert isinstance(error, ApiKeyInQueryError)
        assert (error.status, error.code) == (400, "api_key_in_query")
        assert error.www_authenticate == 'Bearer realm="bastion", error="invalid_request"'
        assert error.detail == IN_QUERY
        assert key not in error.detail
    assert echo.connections == 0


def test_key_in_query_needs_a_key_shape() -> None:
    assert not key_in_query(b"q=substitute_abcdefghijklmnopqrstuvwxyz")
    assert not key_in_query(b"q=xbst_abcdefghijklmnopqrstuvwxyz")
    assert not key_in_query(b"q=bst_short")
    assert key_in_query(b"q=bst%5Flive%5Fabcdefghijklmnopqrstuvwxyz")
    assert key_in_query(b"bst_live_abcdefghijklmnop")


async def test_two_different_keys_are_refused(service: ApiKeyService, echo: EchoServer) -> None:
    _, one = await new_key(service)
    _, two = await new_key(service)
    gateway = Gateway(
        [api_route("api", "/api", echo.url, api_key_header="X-API-Key")], api_keys=service
    )
    error = await denied(gateway, "/api", headers=[bearer(one), ("x-api-key", two)])
    assert isinstance(error, InvalidApiKeyError) and error.reason == "malformed"
    error = await denied(gateway, "/api", headers=[bearer(one), bearer(two)])
    assert isinstance(error, InvalidApiKeyError) and error.reason == "malformed"
    # the same key twice is one key
    result = await call(gateway, "GET", "/api", headers=[bearer(one), ("x-api-key", one)])
    assert result.status == 200
    received = echo.received[-1]
    assert received.header("authorization") is None and received.header("x-api-key") is None
    await gateway.shutdown()


async def test_key_routes_restrict_the_routes_it_may_call(
    service: ApiKeyService, echo: EchoServer
) -> None:
    _, key = await new_key(service, routes=["orders"])
    gateway = Gateway(
        [api_route("orders", "/orders", echo.url), api_route("billing", "/billing", echo.url)],
        api_keys=service,
    )
    assert (await call(gateway, "GET", "/orders/1", headers=[bearer(key)])).status == 200
    with pytest.raises(RouteNotAllowedError) as caught:
        await call(gateway, "GET", "/billing/1", headers=[bearer(key)])
    error = caught.value
    assert (error.code, error.status) == ("route_not_allowed", 403)
    assert error.detail == "This credential may not call this route."
    assert len(echo.received) == 1
    await gateway.shutdown()


async def test_ip_allow_list_uses_the_peer_or_the_trusted_proxy_chain(
    service: ApiKeyService, echo: EchoServer
) -> None:
    _, key = await new_key(service, ip_allow=["203.0.113.0/24"])
    plain = Gateway([api_route("api", "/api", echo.url)], api_keys=service)
    ok: Result = await call(plain, "GET", "/api", headers=[bearer(key)])
    assert ok.status == 200
    error = await denied(plain, headers=[bearer(key)], client=("198.51.100.1", 1))
    assert isinstance(error, ApiKeyIPNotAllowedError)
    assert (error.code, error.status) == ("api_key_ip_not_allowed", 403)
    # a spoofed X-Forwarded-For from an untrusted peer changes nothing
    error = await denied(
        plain,
        headers=[bearer(key), ("x-forwarded-for", "203.0.113.9")],
        client=("198.51.100.1", 1),
    )
    assert isinstance(error, ApiKeyIPNotAllowedError)
    behind = Gateway(
        [api_route("api", "/api", echo.url)], api_keys=service, trusted_proxies=["10.0.0.0/8"]
    )
    result = await call(
        behind,
        "GET",
        "/api",
        headers=[bearer(key), ("x-forwarded-for", "198.51.100.1, 203.0.113.9")],
        client=("10.0.0.2", 1),
    )
    assert result.status == 200
    await plain.shutdown()
    await behind.shutdown()


def test_client_ip() -> None:
    def scope(peer: str | None, *xff: str) -> dict[str, Any]:
        return {
            "client": (peer, 1) if peer else None,
            "headers": [(b"x-forwarded-for", v.encode()) for v in xff],
        }

    none = TrustedProxies()
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert client_ip(scope("203.0.113.1", "1.1.1.1"), none) == "203.0.113.1"
    assert client_ip(scope(None), proxies) is None
    assert client_ip(scope("203.0.113.1", "1.1.1.1"), proxies) == "203.0.113.1"
    assert client_ip(scope("10.0.0.1", "6.6.6.6, 1.1.1.1, 10.0.0.5"), proxies) == "1.1.1.1"
    assert client_ip(scope("10.0.0.1", "6.6.6.6", "1.1.1.1"), proxies) == "1.1.1.1"
    assert client_ip(scope("10.0.0.1", "10.0.0.9, 10.0.0.5"), proxies) == "10.0.0.9"
    assert client_ip(scope("10.0.0.1"), proxies) == "10.0.0.1"
    assert client_ip(scope("10.0.0.1", "unknown"), proxies) == "unknown"
