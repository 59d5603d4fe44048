"""The jwt method: bastion's own access tokens over real HTTP, and the Python authenticator.

Over real HTTP: one ``bastion serve`` (routes ``api`` — ``auth: [api_key, jwt]``, bastion's
default audience, its issuer URL —, ``orders`` and ``billing``, each for its own audience);
tokens are signed with the server's own active signing key (read from its database:
:func:`_support.gateway_authn.own_signing_key`), with any claims; the echo upstream answers
with what it received; refusals are checked as their problem document and ``gateway.denied``
row. The token policy itself (algorithms, ``typ``, claims) is
``tests/vectors/jwt_access_tokens.json``.

In process: the control plane's :class:`JwtAuthenticator` (its verified-token cache on an
injected clock, and how it follows revocations, client changes and lost subscriptions).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from _support import EchoThread
from _support.gateway_authn import own_client, own_signing_key, refused, upstream_saw
from _support.gateway_server import GatewayServer, fresh_echo, request_bytes, serve_gateway
from bastion.crypto import PublicKeySet, SigningKeyPair, sign_jwt
from bastion.gateway.authn.jwt import InvalidBearerTokenError, JwtAuthenticator
from bastion.oauth.clients import CLIENTS_CHANNEL
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import MemorySharedState, open_shared_state

ISSUER = "https://auth.test"
CHALLENGE = 'Bearer realm="bastion", error="invalid_token"'
DETAIL = "The access token is invalid, expired or revoked."


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user:alice",
        "aud": ["orders", ISSUER],
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


# -- over real HTTP ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


@pytest.fixture(scope="module")
def served(
    echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    up = echo_upstream.server.url
    text = (
        f"  - name: api\n    match: {{path: /api}}\n    upstream: {up}\n"
        "    auth: [api_key, jwt]\n"
        + "".join(
            f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {up}\n"
            f"    auth: [jwt]\n    jwt: {{audience: {name}}}\n"
            for name in ("orders", "billing")
        )
    )
    settings = f"tls: off\ntrusted_proxies: [192.0.2.1]\nissuer: {ISSUER}\n"
    with serve_gateway(tmp_path_factory.mktemp("jwt"), text, settings) as server:
        yield server


@dataclass
class Signer:
    """Signs tokens as the server does: its active key, for an existing client of it."""

    key: SigningKeyPair
    client: dict[str, Any]

    def mint(self, claims: dict[str, Any], typ: str = "at+jwt") -> str:
        return sign_jwt({**claims, "client_id": self.client["client_id"]}, self.key, typ=typ)


@pytest.fixture(scope="module")
def signer(served: GatewayServer) -> Signer:
    return Signer(own_signing_key(served), own_client(served))


@pytest.fixture
def gateway(served: GatewayServer, echo_upstream: EchoThread) -> Iterator[httpx.Client]:
    fresh_echo(echo_upstream)
    with served.client() as client:
        yield client


def invalid_token(served: GatewayServer, response: httpx.Response, route: str = "api") -> Any:
    """The one collapsed 401 of every refused token; its ``gateway.denied`` row."""
    row = refused(served, response, 401, "invalid_token", route)
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json()["detail"] == DETAIL
    return row


def test_valid_token_reaches_upstream_with_identity_headers(
    gateway: httpx.Client, signer: Signer, echo_upstream: EchoThread
) -> None:
    token = signer.mint(claims())
    response = gateway.get("/api/x", headers=bearer(token))
    seen = upstream_saw(response)
    assert len(echo_upstream.server.received) == 1
    assert seen["x-bastion-subject"] == "user:alice"
    assert seen["x-bastion-client"] == signer.client["client_id"]
    assert seen["x-bastion-scopes"] == "orders:read profile"
    assert seen["x-bastion-request-id"] == response.headers["x-request-id"]
    assert "x-bastion-key-id" not in seen
    assert "authorization" not in seen  # the token is for bastion only


def test_identity_carries_the_claims(gateway: httpx.Client, signer: Signer) -> None:
    token = signer.mint(claims(scope="a b  c"))
    seen = upstream_saw(gateway.get("/api/x", headers=bearer(token)))
    assert seen["x-bastion-subject"] == "user:alice"
    assert sorted(seen["x-bastion-scopes"].split(" ")) == ["a", "b", "c"]
    assert seen["x-bastion-client"] == signer.client["client_id"]
    assert "x-bastion-key-id" not in seen


def test_expired_token_is_refused_with_one_collapsed_body(
    gateway: httpx.Client, served: GatewayServer, signer: Signer
) -> None:
    past = int(time.time()) - 3600
    expired = gateway.get("/api/x", headers=bearer(signer.mint(claims(iat=past - 600, exp=past))))
    invalid_token(served, expired)
    # The precise reason is for the audit log only: every refusal renders the same body.
    forged = gateway.get(
        "/api/x", headers=bearer(sign_jwt(claims(), SigningKeyPair.generate("ES256")))
    )
    invalid_token(served, forged)
    rid_e, rid_f = expired.headers["x-request-id"], forged.headers["x-request-id"]
    assert expired.content.replace(rid_e.encode(), b"") == forged.content.replace(
        rid_f.encode(), b""
    )
    assert [(n, v) for n, v in expired.headers.items() if n not in ("x-request-id", "date")] == [
        (n, v) for n, v in forged.headers.items() if n not in ("x-request-id", "date")
    ]


def test_forged_tokens_are_refused(
    gateway: httpx.Client, served: GatewayServer, signer: Signer, echo_upstream: EchoThread
) -> None:
    other = SigningKeyPair.generate("ES256")
    invalid_token(
        served, gateway.get("/api/x", headers=bearer(sign_jwt(claims(), other, typ="at+jwt")))
    )
    good = signer.mint(claims())
    head, _, signature = good.split(".")
    forged_payload = sign_jwt(claims(sub="user:root"), other, typ="at+jwt").split(".")[1]
    invalid_token(
        served, gateway.get("/api/x", headers=bearer(f"{head}.{forged_payload}.{signature}"))
    )
    invalid_token(served, gateway.get("/api/x", headers=bearer("a.b.c")))
    assert len(echo_upstream.server.received) == 0


def test_wrong_typ_is_refused(gateway: httpx.Client, served: GatewayServer, signer: Signer) -> None:
    token = signer.mint(claims(), typ="JWT")
    invalid_token(served, gateway.get("/api/x", headers=bearer(token)))


def test_revoked_token_is_refused_even_when_cached(
    gateway: httpx.Client, served: GatewayServer, signer: Signer, echo_upstream: EchoThread
) -> None:
    client = signer.client
    token = signer.mint(claims())
    assert gateway.get("/api/x", headers=bearer(token)).status_code == 200
    assert gateway.get("/api/x", headers=bearer(token)).status_code == 200  # now cached
    revoked = gateway.post(
        "/oauth2/revoke",
        auth=(client["client_id"], client["client_secret"]),
        data={"token": token},
    )
    assert revoked.status_code == 200, revoked.text
    invalid_token(served, gateway.get("/api/x", headers=bearer(token)))
    # ... and stays refused.
    invalid_token(served, gateway.get("/api/x", headers=bearer(token)))
    assert len(echo_upstream.server.received) == 2


def test_route_audience_is_checked(
    gateway: httpx.Client, served: GatewayServer, signer: Signer
) -> None:
    token = signer.mint(claims(aud=["orders", ISSUER]))
    assert gateway.get("/orders/1", headers=bearer(token)).status_code == 200
    assert gateway.get("/api/1", headers=bearer(token)).status_code == 200
    # Cached for other audiences, but never reused across them.
    invalid_token(served, gateway.get("/billing/1", headers=bearer(token)), "billing")


def test_what_is_not_a_jwt_is_not_this_methods_business(
    gateway: httpx.Client, served: GatewayServer
) -> None:
    ex_headers: list[list[tuple[str, str]]] = [
        [],
        [("authorization", "Bearer bst_live_0123456789abcdef0123456789abcdef")],
        [("authorization", "Basic dXNlcjpwYXNz")],
        [("authorization", "Bearer opaque-token-without-dots")],
    ]
    for headers in ex_headers:
        response = gateway.get("/orders/x", headers=headers)
        refused(served, response, 401, "unauthenticated", "orders")
        assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'
    # (exact bytes: an HTTP client refuses a value with trailing whitespace)
    raw = served.raw(request_bytes("GET", "/orders/x", [("Authorization", "Bearer ")]))
    refused(served, raw, 401, "unauthenticated", "orders")
    assert raw.header("www-authenticate") == 'Bearer realm="bastion"'


def test_two_different_tokens_are_refused(
    gateway: httpx.Client, served: GatewayServer, signer: Signer
) -> None:
    one = signer.mint(claims())
    two = signer.mint(claims(sub="user:bob"))
    response = gateway.get(
        "/api/x", headers=[("authorization", f"Bearer {one}"), ("authorization", f"bearer {two}")]
    )
    invalid_token(served, response)


def test_scheme_is_case_insensitive(gateway: httpx.Client, signer: Signer) -> None:
    token = signer.mint(claims())
    assert gateway.get("/api/x", headers=[("authorization", f"BEARER {token}")]).status_code == 200


# -- the control plane's authenticator, in process ---------------------------------------------


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
    clock: list[float]


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    key = SigningKeyPair.generate("ES256")
    keys = PublicKeySet([key.public_key])
    shared = MemorySharedState()
    verifier = AccessTokenVerifier(lambda: keys, issuer=ISSUER, shared=shared)
    counting = CountingVerifier(verifier)
    clock = [time.time()]
    authn = JwtAuthenticator(counting, shared=shared, clock=lambda: clock[0])
    try:
        yield Setup(key, shared, verifier, counting, authn, clock)
    finally:
        await shared.close()


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
