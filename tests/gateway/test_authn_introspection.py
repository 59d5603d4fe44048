"""The introspection method against a real local RFC 7662 endpoint (FakeIdP over HTTP)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from starlette.responses import Response

from bastion.demo.echo import EchoServer
from bastion.gateway import Gateway, InvalidBearerTokenError
from bastion.gateway.authn.introspection import (
    IntrospectionAuthenticator,
    IntrospectionUnavailableError,
)
from gateway.gateway_support import Match, Route, call
from gateway.idp_support import FakeIdP, running_idp


@dataclass
class Setup:
    idp: FakeIdP
    authn: IntrospectionAuthenticator
    gateway: Gateway
    clock: list[float]


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
async def setup(echo: EchoServer) -> AsyncIterator[Setup]:
    async with running_idp() as idp:
        clock = [time.time()]
        authn = IntrospectionAuthenticator(
            idp.url + "/introspect",
            client_id="gate way",
            client_secret="s3cret:&=",
            cache_ttl=60,
            negative_cache_ttl=5,
            timeout=2,
            audience="https://api.test",
            clock=lambda: clock[0],
        )
        route = Route("api", Match("/api"), echo.url, public=False, auth=("introspection",))
        gateway = Gateway([route], authenticators={"introspection": authn})
        try:
            yield Setup(idp, authn, gateway, clock)
        finally:
            await gateway.shutdown()
            await authn.aclose()


def active(setup: Setup, **extra: object) -> dict[str, object]:
    return {
        "active": True,
        "sub": "bob",
        "client_id": "cli",
        "scope": "orders:read",
        "aud": ["https://api.test"],
        "exp": int(setup.clock[0]) + 3600,
        **extra,
    }


async def refused(setup: Setup, token: str) -> str:
    with pytest.raises(InvalidBearerTokenError) as caught:
        await call(setup.gateway, "GET", "/api/x", headers=bearer(token))
    assert caught.value.status == 401
    assert caught.value.code == "invalid_token"
    return caught.value.reason


async def test_active_token_reaches_upstream_and_is_cached(setup: Setup, echo: EchoServer) -> None:
    setup.idp.answers["opaque-1"] = active(setup)
    assert (await call(setup.gateway, "GET", "/api/x", headers=bearer("opaque-1"))).status == 200
    (seen,) = echo.received
    assert seen.header("x-bastion-subject") == "bob"
    assert seen.header("x-bastion-client") == "cli"
    assert seen.header("x-bastion-scopes") == "orders:read"
    assert seen.header("authorization") is None
    # RFC 6749 §2.3.1: id and secret form-encoded before Basic.
    (basic,) = setup.idp.basic_seen
    assert base64.b64decode(basic.removeprefix("Basic ")) == b"gate+way:s3cret%3A%26%3D"
    await call(setup.gateway, "GET", "/api/x", headers=bearer("opaque-1"))
    assert setup.idp.hits["introspect"] == 1
    setup.clock[0] += 61  # past cache_ttl: asked again
    await call(setup.gateway, "GET", "/api/x", headers=bearer("opaque-1"))
    assert setup.idp.hits["introspect"] == 2


async def test_cache_ends_at_the_token_exp(setup: Setup) -> None:
    setup.idp.answers["short"] = active(setup, exp=int(setup.clock[0]) + 10)
    await call(setup.gateway, "GET", "/api/x", headers=bearer("short"))
    setup.clock[0] += 11
    setup.idp.answers["short"] = {"active": False}
    assert await refused(setup, "short") == "inactive"
    assert setup.idp.hits["introspect"] == 2


async def test_inactive_is_401_and_cached_briefly(setup: Setup) -> None:
    assert await refused(setup, "dead") == "inactive"
    assert await refused(setup, "dead") == "inactive"
    assert setup.idp.hits["introspect"] == 1
    setup.clock[0] += 6
    setup.idp.answers["dead"] = active(setup)
    assert (await call(setup.gateway, "GET", "/api/x", headers=bearer("dead"))).status == 200


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
async def test_responses_are_validated(
    setup: Setup, answer: dict[str, object], reason: str | None
) -> None:
    setup.idp.answers["t"] = answer
    if reason is None:
        with pytest.raises(IntrospectionUnavailableError):
            await call(setup.gateway, "GET", "/api/x", headers=bearer("t"))
    else:
        assert await refused(setup, "t") == reason


async def test_endpoint_down_is_503_fail_closed(setup: Setup) -> None:
    setup.idp.down = True
    with pytest.raises(IntrospectionUnavailableError) as caught:
        await call(setup.gateway, "GET", "/api/x", headers=bearer("any"))
    assert (caught.value.status, caught.value.code) == (503, "introspection_unavailable")
    setup.idp.down = False
    setup.idp.introspect_answer = lambda token: Response(b"not json", status_code=200)
    with pytest.raises(IntrospectionUnavailableError):
        await call(setup.gateway, "GET", "/api/x", headers=bearer("any"))


async def test_unreachable_endpoint_is_503(echo: EchoServer) -> None:
    authn = IntrospectionAuthenticator(
        "http://127.0.0.1:9/introspect", client_id="a", client_secret="b", timeout=1
    )
    with pytest.raises(IntrospectionUnavailableError):
        await authn.authenticate("x")
    await authn.aclose()


async def test_api_keys_and_absent_tokens_are_not_its_business(setup: Setup) -> None:
    from bastion.gateway import UnauthenticatedError

    with pytest.raises(UnauthenticatedError) as caught:
        await call(setup.gateway, "GET", "/api/x", headers=bearer("bst_abc"))
    assert caught.value.code == "unauthenticated"
    assert setup.idp.hits["introspect"] == 0


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
