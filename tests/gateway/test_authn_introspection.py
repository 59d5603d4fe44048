"""The introspection method against a real local RFC 7662 endpoint (FakeIdP over HTTP).

Over real HTTP: one ``bastion serve`` whose ``introspection`` endpoint is a local
``FakeIdP`` (client id and secret that need form-encoding, ``cache_ttl: 4``,
``negative_cache_ttl: 3``, an audience), one route ``auth: [introspection]``; the cache
windows run on the real clock and are waited for. Each test uses tokens of its own (the
server's cache outlives a test). In process: the control plane's introspection client
(an unreachable endpoint; what it pushes into the native cache).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from starlette.responses import Response

from _support import EchoThread
from _support.gateway_authn import refused, serve_configured, upstream_saw
from _support.gateway_server import GatewayServer, fresh_echo
from bastion.gateway.authn.introspection import (
    IntrospectionAuthenticator,
    IntrospectionUnavailableError,
)
from bastion.gateway.authn.jwt import InvalidBearerTokenError
from gateway.idp_support import FakeIdP, IdPThread, running_idp

AUDIENCE = "https://api.test"
CACHE_TTL = 4.0
NEGATIVE_TTL = 3.0


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    thread = IdPThread()
    try:
        yield thread.idp
    finally:
        thread.close()


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    idp: FakeIdP, echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    routes = (
        f"  - name: api\n    match: {{path: /api}}\n    upstream: {echo_upstream.server.url}\n"
        "    auth: [introspection]\n"
    )
    settings = (
        "tls: off\ntrusted_proxies: [192.0.2.1]\nintrospection:\n"
        f"  endpoint: {idp.url}/introspect\n"
        "  client_id: gate way\n"
        "  client_secret: 's3cret:&='\n"
        f"  cache_ttl: {CACHE_TTL}\n"
        f"  negative_cache_ttl: {NEGATIVE_TTL}\n"
        "  timeout: 2\n"
        f"  audience: {AUDIENCE}\n"
    )
    with serve_configured(tmp_path_factory.mktemp("introspection"), routes, settings) as server:
        yield server


@pytest.fixture
def gateway(
    served: GatewayServer, echo_upstream: EchoThread, idp: FakeIdP
) -> Iterator[httpx.Client]:
    fresh_echo(echo_upstream)
    try:
        with served.client() as client:
            yield client
    finally:
        idp.down, idp.introspect_answer = False, None


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def new_token() -> str:
    return f"opaque-{uuid.uuid4().hex}"


def active(**extra: object) -> dict[str, object]:
    return {
        "active": True,
        "sub": "bob",
        "client_id": "cli",
        "scope": "orders:read",
        "aud": [AUDIENCE],
        "exp": int(time.time()) + 3600,
        **extra,
    }


def invalid(served: GatewayServer, response: httpx.Response) -> None:
    refused(served, response, 401, "invalid_token", "api")
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion", error="invalid_token"'


def unavailable(served: GatewayServer, response: httpx.Response) -> None:
    refused(served, response, 503, "introspection_unavailable", "api")


def test_active_token_reaches_upstream_and_is_cached(
    gateway: httpx.Client, idp: FakeIdP, echo_upstream: EchoThread
) -> None:
    token = new_token()
    idp.answers[token] = active()
    asked = idp.hits["introspect"]
    seen = upstream_saw(gateway.get("/api/x", headers=bearer(token)))
    assert len(echo_upstream.server.received) == 1
    assert seen["x-bastion-subject"] == "bob"
    assert seen["x-bastion-client"] == "cli"
    assert seen["x-bastion-scopes"] == "orders:read"
    assert "authorization" not in seen
    # RFC 6749 §2.3.1: id and secret form-encoded before Basic.
    basic = idp.basic_seen[-1]
    assert base64.b64decode(basic.removeprefix("Basic ")) == b"gate+way:s3cret%3A%26%3D"
    assert gateway.get("/api/x", headers=bearer(token)).status_code == 200
    assert idp.hits["introspect"] == asked + 1
    time.sleep(CACHE_TTL + 0.2)  # past cache_ttl: asked again
    assert gateway.get("/api/x", headers=bearer(token)).status_code == 200
    assert idp.hits["introspect"] == asked + 2


def test_cache_ends_at_the_token_exp(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    token = new_token()
    exp = int(time.time()) + 1  # before cache_ttl ends
    idp.answers[token] = active(exp=exp)
    asked = idp.hits["introspect"]
    assert gateway.get("/api/x", headers=bearer(token)).status_code == 200
    time.sleep(max(0.0, exp - time.time()) + 0.1)
    idp.answers[token] = {"active": False}
    invalid(served, gateway.get("/api/x", headers=bearer(token)))
    assert idp.hits["introspect"] == asked + 2


def test_inactive_is_401_and_cached_briefly(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    token = new_token()
    asked = idp.hits["introspect"]
    invalid(served, gateway.get("/api/x", headers=bearer(token)))
    invalid(served, gateway.get("/api/x", headers=bearer(token)))
    assert idp.hits["introspect"] == asked + 1
    time.sleep(NEGATIVE_TTL + 0.2)
    idp.answers[token] = active()
    assert gateway.get("/api/x", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"active": "true", "sub": "x"}, None),  # not a boolean: the endpoint is broken
        ({"sub": "x"}, None),
        ({"active": True, "sub": "x", "aud": "https://other.test"}, "wrong_audience"),
        ({"active": True, "aud": "https://api.test"}, "missing_claim"),
        ({"active": True, "sub": 5, "aud": "https://api.test"}, "invalid_claim"),
        ({"active": True, "sub": "x", "aud": "https://api.test", "exp": "soon"}, "invalid_claim"),
        ({"active": True, "sub": "x", "aud": "https://api.test", "exp": 1000}, "expired"),
    ],
)
def test_responses_are_validated(
    gateway: httpx.Client,
    served: GatewayServer,
    idp: FakeIdP,
    answer: dict[str, object],
    reason: str | None,
) -> None:
    # (``reason``: Python's precise reason, for its log only; every refusal is one 401.)
    token = new_token()
    idp.answers[token] = answer
    response = gateway.get("/api/x", headers=bearer(token))
    if reason is None:
        unavailable(served, response)
    else:
        invalid(served, response)


def test_endpoint_down_is_503_fail_closed(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    idp.down = True
    response = gateway.get("/api/x", headers=bearer(new_token()))
    unavailable(served, response)
    assert response.json()["detail"] == "The token cannot be checked right now; try again shortly."
    idp.down = False
    idp.introspect_answer = lambda token: Response(b"not json", status_code=200)
    unavailable(served, gateway.get("/api/x", headers=bearer(new_token())))


async def test_unreachable_endpoint_is_503() -> None:
    authn = IntrospectionAuthenticator(
        "http://127.0.0.1:9/introspect", client_id="a", client_secret="b", timeout=1
    )
    with pytest.raises(IntrospectionUnavailableError):
        await authn.authenticate("x")
    await authn.aclose()


def test_api_keys_and_absent_tokens_are_not_its_business(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    asked = idp.hits["introspect"]
    response = gateway.get("/api/x", headers=bearer("bst_abc"))
    refused(served, response, 401, "unauthenticated", "api")
    assert idp.hits["introspect"] == asked


async def test_every_cached_answer_is_pushed_with_its_deadline() -> None:
    """What the native cache receives (``native_push.introspected``): Python's own entries."""
    from bastion.crypto import sha256_hex

    pushed: list[tuple[str, object, float]] = []
    async with running_idp() as idp:
        now = time.time()
        clock = [now]
        authn = IntrospectionAuthenticator(
            idp.url + "/introspect",
            client_id="gw",
            client_secret="s",
            cache_ttl=60,
            negative_cache_ttl=5,
            clock=lambda: clock[0],
            push=lambda digest, identity, until: pushed.append((digest, identity, until)),
        )
        try:
            idp.answers["live"] = {"active": True, "sub": "bob", "exp": int(now) + 30}
            identity = await authn.authenticate("live")
            assert pushed == [(sha256_hex(b"live"), identity, float(int(now) + 30))]
            # A hit pushes again (the native cache may have evicted it); no new question.
            assert await authn.authenticate("live") is identity
            assert len(pushed) == 2 and pushed[1] == pushed[0]
            assert idp.hits["introspect"] == 1
            with pytest.raises(InvalidBearerTokenError):
                await authn.authenticate("dead")
            assert pushed[2] == (sha256_hex(b"dead"), None, now + 5)
            # An endpoint that is down: nothing cached, nothing pushed.
            idp.down = True
            with pytest.raises(IntrospectionUnavailableError):
                await authn.authenticate("other")
            assert len(pushed) == 3
        finally:
            await authn.aclose()
