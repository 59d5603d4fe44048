"""The jwt method through the Gateway: real signing keys, a REAL AccessTokenVerifier.

Hand-built ASGI scopes drive the gateway; the echo upstream shows what was forwarded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from bastion.crypto import PublicKeySet, SigningKeyPair, sign_jwt
from bastion.demo.echo import EchoServer
from bastion.gateway import (
    Gateway,
    InvalidBearerTokenError,
    JwtAuthenticator,
    UnauthenticatedError,
)
from bastion.http.problem import problem_response
from bastion.oauth.clients import CLIENTS_CHANNEL
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import MemorySharedState, open_shared_state
from gateway.gateway_support import Match, Recorder, Route, call, make_receive, make_scope

ISSUER = "https://auth.test"
CHALLENGE = 'Bearer realm="bastion", error="invalid_token"'
DETAIL = "The access token is invalid, expired or revoked."


@dataclass(frozen=True)
class AudienceRoute(Route):
    """A route stand-in with an ``audience`` setting."""

    audience: str | None = None


class CountingVerifier:
    """The real verifier, counting how often the authenticator asks it."""

    def __init__(self, inner: AccessTokenVerifier) -> None:
        self.inner = inner
        self.calls = 0

    async def verify(self, token: str, *, audience: str | None = None) -> Mapping[str, Any]:
        self.calls += 1
        return await self.inner.verify(token, audience=audience)


@dataclass
class Setup:
    key: SigningKeyPair
    shared: MemorySharedState
    verifier: AccessTokenVerifier
    counting: CountingVerifier
    authn: JwtAuthenticator
    gateway: Gateway
    clock: list[float]


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user:alice",
        "aud": "orders",
        "client_id": "web-app",
        "scope": "orders:read profile",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return base


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
async def setup(echo: EchoServer) -> AsyncIterator[Setup]:
    key = SigningKeyPair.generate("ES256")
    keys = PublicKeySet([key.public_key])
    shared = MemorySharedState()
    verifier = AccessTokenVerifier(lambda: keys, issuer=ISSUER, shared=shared)
    counting = CountingVerifier(verifier)
    clock = [time.time()]
    authn = JwtAuthenticator(counting, shared=shared, clock=lambda: clock[0])
    routes = [
        AudienceRoute("api", Match("/api"), echo.url, public=False, auth=("api_key", "jwt")),
        AudienceRoute(
            "orders", Match("/orders"), echo.url, public=False, auth=("jwt",), audience="orders"
        ),
        AudienceRoute(
            "billing", Match("/billing"), echo.url, public=False, auth=("jwt",), audience="billing"
        ),
    ]
    gateway = Gateway(routes, authenticators={"jwt": authn})
    try:
        yield Setup(key, shared, verifier, counting, authn, gateway, clock)
    finally:
        await gateway.shutdown()
        await shared.close()


async def refused(setup: Setup, token: str, path: str = "/api/x") -> InvalidBearerTokenError:
    with pytest.raises(InvalidBearerTokenError) as caught:
        await call(setup.gateway, "GET", path, headers=bearer(token))
    return caught.value


async def test_valid_token_reaches_upstream_with_identity_headers(
    setup: Setup, echo: EchoServer
) -> None:
    token = sign_jwt(claims(), setup.key, typ="at+jwt")
    scope = make_scope("GET", "/api/x", headers=bearer(token))
    scope["bastion.request_id"] = "req-42"
    send = Recorder()
    await setup.gateway(scope, make_receive(), send)
    assert send.result().status == 200
    (seen,) = echo.received
    assert seen.header("x-bastion-subject") == "user:alice"
    assert seen.header("x-bastion-client") == "web-app"
    assert seen.header("x-bastion-scopes") == "orders:read profile"
    assert seen.header("x-bastion-request-id") == "req-42"
    assert seen.header("x-bastion-key-id") is None
    assert seen.header("authorization") is None  # the token is for bastion only


async def test_identity_carries_the_claims(setup: Setup) -> None:
    token = sign_jwt(claims(scope="a b  c"), setup.key, typ="at+jwt")
    identity = await setup.authn.authenticate(token)
    assert identity.method == "jwt"
    assert identity.subject == "user:alice"
    assert identity.scopes == frozenset({"a", "b", "c"})
    assert identity.claims["client_id"] == "web-app"
    assert identity.key_id is None and identity.routes is None


async def test_expired_token_is_refused_with_one_collapsed_body(setup: Setup) -> None:
    past = int(time.time()) - 3600
    token = sign_jwt(claims(iat=past - 600, exp=past), setup.key, typ="at+jwt")
    error = await refused(setup, token)
    assert error.reason == "expired"
    assert error.code == "invalid_token" and error.status == 401
    assert error.detail == DETAIL
    status, headers, body = problem_response(error, "rid-1")
    assert status == 401
    assert (b"www-authenticate", CHALLENGE.encode()) in headers
    document = orjson.loads(body)
    assert document["reason"] == "invalid_token"
    assert document["detail"] == DETAIL
    # The precise reason is for the audit log only: every refusal renders the same body.
    forged = await refused(setup, sign_jwt(claims(), SigningKeyPair.generate("ES256")))
    assert forged.reason == "unknown_kid"
    assert problem_response(forged, "rid-1") == (status, headers, body)


async def test_forged_tokens_are_refused(setup: Setup, echo: EchoServer) -> None:
    other = SigningKeyPair.generate("ES256")
    assert (await refused(setup, sign_jwt(claims(), other, typ="at+jwt"))).reason == "unknown_kid"
    good = sign_jwt(claims(), setup.key, typ="at+jwt")
    head, _, signature = good.split(".")
    forged_payload = sign_jwt(claims(sub="user:root"), other, typ="at+jwt").split(".")[1]
    forged = f"{head}.{forged_payload}.{signature}"
    assert (await refused(setup, forged)).reason == "bad_signature"
    assert (await refused(setup, "a.b.c")).reason == "malformed"
    assert len(echo.received) == 0


async def test_wrong_typ_is_refused(setup: Setup) -> None:
    token = sign_jwt(claims(), setup.key, typ="JWT")
    assert (await refused(setup, token)).reason == "wrong_typ"


async def test_revoked_token_is_refused_even_when_cached(setup: Setup, echo: EchoServer) -> None:
    token_claims = claims()
    token = sign_jwt(token_claims, setup.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/api/x", headers=bearer(token))).status == 200
    assert (await call(setup.gateway, "GET", "/api/x", headers=bearer(token))).status == 200
    assert setup.counting.calls == 1  # the second request was served from the cache
    assert len(setup.authn) == 1
    await setup.verifier.revoke(token_claims)
    error = await refused(setup, token)
    assert error.reason == "revoked"
    assert setup.counting.calls == 1  # refused on the cache hit, by the deny-list
    assert len(setup.authn) == 0
    # ... and stays refused once no longer cached (the verifier itself checks the list).
    assert (await refused(setup, token)).reason == "revoked"
    assert setup.counting.calls == 2
    assert len(echo.received) == 2


async def test_cache_entries_end_after_the_cache_ttl_or_expiry(setup: Setup) -> None:
    token = sign_jwt(claims(), setup.key, typ="at+jwt")
    await setup.authn.authenticate(token)
    await setup.authn.authenticate(token)
    assert setup.counting.calls == 1
    setup.clock[0] += 61.0  # past now + 60 s: verified again
    await setup.authn.authenticate(token)
    assert setup.counting.calls == 2
    # A token expiring in 5 s is cached only until its exp.
    soon = int(setup.clock[0]) + 5
    short = sign_jwt(claims(exp=soon), setup.key, typ="at+jwt")
    await setup.authn.authenticate(short)
    assert setup.counting.calls == 3
    setup.clock[0] = soon + 0.5
    await setup.authn.authenticate(short)  # still within the verifier's leeway
    assert setup.counting.calls == 4


async def test_cache_is_bounded_and_per_audience(setup: Setup) -> None:
    small = JwtAuthenticator(setup.counting, shared=setup.shared, cache_size=2)
    tokens = [sign_jwt(claims(), setup.key, typ="at+jwt") for _ in range(3)]
    for token in tokens:
        await small.authenticate(token)
    assert len(small) == 2
    await small.authenticate(tokens[2])  # the newest is kept
    assert setup.counting.calls == 3
    await small.authenticate(tokens[0])  # the oldest was evicted
    assert setup.counting.calls == 4
    with pytest.raises(ValueError, match="must not be negative"):
        JwtAuthenticator(setup.counting, shared=setup.shared, cache_size=-1)


async def test_route_audience_is_checked(setup: Setup) -> None:
    token = sign_jwt(claims(aud="orders"), setup.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/orders/1", headers=bearer(token))).status == 200
    assert (await call(setup.gateway, "GET", "/api/1", headers=bearer(token))).status == 200
    # Cached for other audiences, but never reused across them.
    assert (await refused(setup, token, "/billing/1")).reason == "wrong_audience"


async def test_what_is_not_a_jwt_is_not_this_methods_business(setup: Setup) -> None:
    ex_headers: list[list[tuple[str, str]]] = [
        [],
        [("authorization", "Bearer bst_live_0123456789abcdef0123456789abcdef")],
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer opaque-token-without-dots")],
        [("authorization", "Bearer ")],
    ]
    for headers in ex_headers:
        with pytest.raises(UnauthenticatedError) as caught:
            await call(setup.gateway, "GET", "/api/x", headers=headers)
        assert type(caught.value) is UnauthenticatedError
        assert caught.value.code == "unauthenticated"
    assert setup.counting.calls == 0


async def test_two_different_tokens_are_refused(setup: Setup) -> None:
    one = sign_jwt(claims(), setup.key, typ="at+jwt")
    two = sign_jwt(claims(sub="user:bob"), setup.key, typ="at+jwt")
    with pytest.raises(InvalidBearerTokenError) as caught:
        await call(
            setup.gateway,
            "GET",
            "/api/x",
            headers=[("authorization", f"Bearer {one}"), ("authorization", f"bearer {two}")],
        )
    assert caught.value.reason == "malformed"
    assert setup.counting.calls == 0


async def test_scheme_is_case_insensitive(setup: Setup) -> None:
    token = sign_jwt(claims(), setup.key, typ="at+jwt")
    headers = [("authorization", f"BEARER {token}")]
    assert (await call(setup.gateway, "GET", "/api/x", headers=headers)).status == 200


# -- revocations by channel: no shared-state read per cached request -----------------


class CountingShared(MemorySharedState):
    """In-process shared state counting deny-list reads (``get``)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def get(self, key: str) -> bytes | None:
        self.reads += 1
        return await super().get(key)


@dataclass
class Node:
    """One process's verifier + authenticator over a shared state, following its channels."""

    shared: Any
    verifier: AccessTokenVerifier
    counting: CountingVerifier
    authn: JwtAuthenticator
    stop: asyncio.Event
    task: asyncio.Task[None]


async def start_node(shared: Any, keys: PublicKeySet) -> Node:
    verifier = AccessTokenVerifier(lambda: keys, issuer=ISSUER, shared=shared)
    counting = CountingVerifier(verifier)
    authn = JwtAuthenticator(counting, shared=shared)
    verifier.on_revoke(authn.forget)  # as the runtime wires it
    stop = asyncio.Event()
    task = asyncio.create_task(authn.run(stop, backoff=0.05))
    await until(lambda: authn.following)
    return Node(shared, verifier, counting, authn, stop, task)


async def stop_node(node: Node) -> None:
    node.stop.set()
    await asyncio.wait_for(node.task, 5)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def node() -> AsyncIterator[tuple[Node, SigningKeyPair]]:
    key = SigningKeyPair.generate("ES256")
    shared = CountingShared()
    started = await start_node(shared, PublicKeySet([key.public_key]))
    try:
        yield started, key
    finally:
        await stop_node(started)
        await shared.close()


async def test_cached_hits_read_no_shared_state_while_following(
    node: tuple[Node, SigningKeyPair],
) -> None:
    n, key = node
    token = sign_jwt(claims(), key, typ="at+jwt")
    await n.authn.authenticate(token)
    reads = n.shared.reads  # the verification read the deny-list once
    assert reads == 1
    for _ in range(50):
        await n.authn.authenticate(token)
    assert n.shared.reads == reads  # 50 cache hits, no deny-list read
    assert n.counting.calls == 1


async def test_revocation_here_drops_the_entry_before_revoke_returns(
    node: tuple[Node, SigningKeyPair],
) -> None:
    n, key = node
    token_claims = claims()
    token = sign_jwt(token_claims, key, typ="at+jwt")
    await n.authn.authenticate(token)
    await n.verifier.revoke(token_claims)
    # No yield to the event loop in between: the local listener already dropped it.
    with pytest.raises(InvalidBearerTokenError) as caught:
        await n.authn.authenticate(token)
    assert caught.value.reason == "revoked"
    assert n.counting.calls == 2  # verified again, and the verifier met the deny-list
    assert len(n.authn) == 0


async def test_revocation_published_by_another_process_drops_the_entry(
    node: tuple[Node, SigningKeyPair],
) -> None:
    n, key = node
    kept_claims, revoked_claims = claims(), claims()
    kept = sign_jwt(kept_claims, key, typ="at+jwt")
    revoked = sign_jwt(revoked_claims, key, typ="at+jwt")
    await n.authn.authenticate(kept)
    await n.authn.authenticate(revoked, audience="orders")
    await n.authn.authenticate(revoked)  # cached under two audiences
    assert len(n.authn) == 3
    # Another process's verifier: deny-list + announcement, no local listener here.
    other = AccessTokenVerifier(lambda: PublicKeySet([]), issuer=ISSUER, shared=n.shared)
    await other.revoke(revoked_claims)
    await until(lambda: len(n.authn) == 1)
    with pytest.raises(InvalidBearerTokenError) as caught:
        await n.authn.authenticate(revoked)
    assert caught.value.reason == "revoked"
    await n.authn.authenticate(kept)  # others stay cached
    assert n.counting.calls == 4


async def test_a_changed_client_drops_its_tokens(node: tuple[Node, SigningKeyPair]) -> None:
    n, key = node
    web = sign_jwt(claims(client_id="web-app"), key, typ="at+jwt")
    cli = sign_jwt(claims(client_id="cli"), key, typ="at+jwt")
    await n.authn.authenticate(web)
    await n.authn.authenticate(cli)
    await n.shared.publish(CLIENTS_CHANNEL, b"web-app")  # e.g. disabled on another node
    await until(lambda: len(n.authn) == 1)
    await n.authn.authenticate(cli)
    assert n.counting.calls == 2  # cli still cached
    await n.authn.authenticate(web)
    assert n.counting.calls == 3  # web-app verified again (client status re-read)


async def test_a_revocation_during_verification_is_not_cached_over(
    node: tuple[Node, SigningKeyPair],
) -> None:
    n, key = node
    token_claims = claims()
    token = sign_jwt(token_claims, key, typ="at+jwt")
    gate = asyncio.Event()
    inner = n.counting.inner

    class Slow:
        async def verify(self, token: str, *, audience: str | None = None) -> Mapping[str, Any]:
            verified = await inner.verify(token, audience=audience)  # deny-list read: clean
            await gate.wait()  # ... and the revocation lands meanwhile
            return verified

    slow = JwtAuthenticator(Slow(), shared=n.shared)
    stop = asyncio.Event()
    task = asyncio.create_task(slow.run(stop))
    try:
        # All four channels subscribed (revocations, clients, API keys, signing keys):
        # each subscription starts by clearing the cache once.
        await until(lambda: slow.following and slow._epoch == 4)
        pending = asyncio.create_task(slow.authenticate(token))
        await asyncio.sleep(0.01)
        await n.verifier.revoke(token_claims)
        await until(lambda: slow._epoch == 5)  # the announcement reached the slow node
        gate.set()
        await pending  # this one request was judged before the revocation
        assert len(slow) == 0  # ... but not cached past it
        with pytest.raises(InvalidBearerTokenError):
            await slow.authenticate(token)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_without_the_channel_every_hit_reads_the_deny_list(setup: Setup) -> None:
    """Not following (before run(), or after the subscription was lost): fail-safe reads."""
    assert not setup.authn.following
    counting = CountingShared()
    authn = JwtAuthenticator(setup.counting, shared=counting)
    setup.verifier._shared = counting  # the verifier reads the same state
    token = sign_jwt(claims(), setup.key, typ="at+jwt")
    for _ in range(3):
        await authn.authenticate(token)
    assert setup.counting.calls == 1
    assert counting.reads == 3  # one by the verification, one per cache hit
    await counting.close()


async def test_lost_subscription_falls_back_to_reads_until_resubscribed(
    node: tuple[Node, SigningKeyPair],
) -> None:
    n, key = node
    token = sign_jwt(claims(), key, typ="at+jwt")
    await n.authn.authenticate(token)
    # Close every subscription, as a lost Redis connection would.
    for subscribers in tuple(n.shared._channels.values()):
        for subscription in tuple(subscribers):
            subscription.fail(SharedStateUnavailableError("gone"))
    await until(lambda: not n.authn.following or len(n.authn) == 0)
    await until(lambda: n.authn.following)  # resubscribed (after the backoff)
    assert len(n.authn) == 0  # whatever was cached before the gap is forgotten


@pytest.mark.redis
async def test_revocation_reaches_another_node_over_redis(
    redis_url: str, redis_prefix: str
) -> None:
    """Two nodes on one real Redis: a token cached on A, revoked on B, refused by A."""
    key = SigningKeyPair.generate("ES256")
    keys = PublicKeySet([key.public_key])
    state_a = await open_shared_state(redis_url, key_prefix=redis_prefix)
    state_b = await open_shared_state(redis_url, key_prefix=redis_prefix)
    a = await start_node(state_a, keys)
    b = await start_node(state_b, keys)
    try:
        token_claims = claims()
        token = sign_jwt(token_claims, key, typ="at+jwt")
        await a.authn.authenticate(token)
        await a.authn.authenticate(token)
        assert a.counting.calls == 1
        await b.verifier.revoke(token_claims)
        await until(lambda: len(a.authn) == 0, timeout=2.0)
        with pytest.raises(InvalidBearerTokenError) as caught:
            await a.authn.authenticate(token)
        assert caught.value.reason == "revoked"
    finally:
        await stop_node(a)
        await stop_node(b)
        await state_a.close()
        await state_b.close()


def test_hits_skip_the_deny_list_only_while_every_channel_is_followed() -> None:
    # A subscription opening drops the whole cache: until all four are open (or while one
    # is lost), cache hits read the deny-list again.
    from bastion.storage import feed

    authn = JwtAuthenticator(CountingVerifier(None), shared=MemorySharedState())  # type: ignore[arg-type]
    channels = (feed.REVOKED_TOKENS, feed.API_KEYS, feed.SIGNING_KEYS, feed.CLIENTS)
    for index, channel in enumerate(channels):
        assert not authn.following, index
        authn._subscribed(channel)(True)
    assert authn.following
    authn._subscribed(feed.CLIENTS)(False)
    assert not authn.following
    authn._subscribed(feed.CLIENTS)(True)
    assert authn.following
