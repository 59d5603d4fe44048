"""gateway/native_push.py: what Python accepts fills the native caches, every change empties them.

The native decision is read back through ``_native.authn_decide`` (the native
``authenticate`` + ``authorize`` steps): a dict is a native allow, ``None`` a
defer to Python.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from _support.subscriptions import subscribed
from _support.waiting import wait_until_async
from bastion import _native
from bastion.apikeys import API_KEYS_CHANNEL, ApiKeyService, ApiKeySpec
from bastion.apikeys.state import api_key_subject
from bastion.crypto import PublicKeySet, SigningKeyPair, sign_jwt
from bastion.gateway import InvalidBearerTokenError, JwtAuthenticator, native_push
from bastion.gateway.compile import auth
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.settings import RouteMatch, RouteSettings, Settings
from bastion.storage import Database, feed
from bastion.storage.shared import MemorySharedState

ISSUER = "https://auth.test"


def section(**kw: Any) -> str:
    route = RouteSettings(
        name="orders",
        match=RouteMatch(path="/orders", methods=["GET", "POST"]),
        upstream="http://u:9",
        **kw,
    )
    compiled = auth.section(route, Settings(issuer=ISSUER))
    assert isinstance(compiled, dict)
    return json.dumps(compiled)


KEY_ROUTE = section(auth=["api_key"], scopes={"GET": ["orders:read"], "POST": ["orders:write"]})
JWT_ROUTE = section(auth=["jwt"], scopes=["orders:read"])


def decide(route: str, secret: str, method: str = "GET") -> dict[str, object] | None:
    return _native.authn_decide(route, "orders", method, [("authorization", f"Bearer {secret}")])


# -- API keys ------------------------------------------------------------------


async def key_service(path: Path, settings: Settings) -> ApiKeyService:
    db = await Database.connect(f"sqlite:///{path}")
    service = ApiKeyService(db, settings, MemorySharedState())
    native_push.install(settings, None)
    service.mirror(native_push.NativeApiKeys())
    return service


@pytest.fixture
async def service(migrated_sqlite_file: Path, tmp_path: Path) -> AsyncIterator[ApiKeyService]:
    path = tmp_path / "bastion.db"
    shutil.copyfile(migrated_sqlite_file, path)
    service = await key_service(path, Settings(issuer=ISSUER))
    try:
        yield service
    finally:
        await service.shared.close()
        await service.db.close()


async def test_a_key_python_accepted_is_allowed_natively(service: ApiKeyService) -> None:
    record, secret = await service.create(ApiKeySpec(name="k", scopes=["orders:read"]))
    assert decide(KEY_ROUTE, secret) is None
    assert not _native.api_key_cached(record.digest)
    await service.verify(secret)
    assert _native.api_key_cached(record.digest)
    assert decide(KEY_ROUTE, secret) == {
        "method": "api_key",
        "subject": f"apikey:{record.id}",
        "client_id": None,
        "scopes": ["orders:read"],
        "key_id": record.id,
        "routes": None,
    }
    # authorize: POST needs orders:write (Python's 403 is rendered by Python)
    assert decide(KEY_ROUTE, secret, "POST") is None
    # a key in the query string is Python's 400
    assert (
        _native.authn_decide(
            KEY_ROUTE, "orders", "GET", [("authorization", f"Bearer {secret}")], f"k={secret}"
        )
        is None
    )


async def test_the_native_subject_is_the_one_python_derives(
    service: ApiKeyService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``apikeys.state.api_key_subject`` is the rule's one home: the record carries its
    answer and the native identity is that answer, whatever the rule says."""
    owned, owned_secret = await service.create(
        ApiKeySpec(name="owned", scopes=["orders:read"], owner_type="user", owner_id="u1")
    )
    assert json.loads(native_push.api_key_record(owned))["subject"] == api_key_subject(owned)
    await service.verify(owned_secret)
    assert (decide(KEY_ROUTE, owned_secret) or {})["subject"] == "user:u1"

    # Another rule in Python is what the native plane serves: it derives none of its own.
    monkeypatch.setattr(native_push, "api_key_subject", lambda key: f"other:{key.id}")
    record, secret = await service.create(ApiKeySpec(name="k", scopes=["orders:read"]))
    await service.verify(secret)
    assert (decide(KEY_ROUTE, secret) or {})["subject"] == f"other:{record.id}"


async def test_revoke_disable_and_feed_deliveries_stop_it_at_once(service: ApiKeyService) -> None:
    record, secret = await service.create(ApiKeySpec(name="k", scopes=["orders:read"]))
    await service.verify(secret)
    assert decide(KEY_ROUTE, secret) is not None
    await service.revoke(record.id)
    assert decide(KEY_ROUTE, secret) is None
    assert not _native.api_key_cached(record.digest)

    record, secret = await service.create(ApiKeySpec(name="k2", scopes=["orders:read"]))
    await service.verify(secret)
    await service.disable(record.id)
    assert decide(KEY_ROUTE, secret) is None

    record, secret = await service.create(ApiKeySpec(name="k3", scopes=["orders:read"]))
    await service.verify(secret)
    service.invalidate(record.id)  # what a change-feed delivery of "api-keys" calls
    assert decide(KEY_ROUTE, secret) is None
    await service.verify(secret)
    service.invalidate(None)  # an empty message: forget everything
    assert not _native.api_key_cached(record.digest)


async def test_refusals_are_pushed_and_every_key_change_forgets_them(
    service: ApiKeyService,
) -> None:
    from bastion.apikeys.errors import InvalidApiKeyError
    from bastion.crypto import generate_api_key

    unknown = generate_api_key()
    digest = service.digest(unknown)
    assert not _native.api_key_refused(digest)
    with pytest.raises(InvalidApiKeyError):
        await service.verify(unknown)
    assert _native.api_key_refused(digest)
    # A key created (any key: the change feed announces its id) forgets every refusal,
    # Python's own "no such key" included: the next verify asks the database again.
    await service.create(ApiKeySpec(name="new", scopes=["orders:read"]))
    service.invalidate("some-new-key-id")  # what the change feed delivers for a creation
    assert not _native.api_key_refused(digest)
    assert digest not in service._unknown
    with pytest.raises(InvalidApiKeyError):
        await service.verify(unknown)
    assert _native.api_key_refused(digest)
    # Python's own negative cache answering re-pushes what the native one lost.
    _native.api_keys_clear()
    with pytest.raises(InvalidApiKeyError):
        await service.verify(unknown)
    assert _native.api_key_refused(digest)
    # A format that can never be valid is refused natively too (no lookup).
    malformed = unknown[:-1] + ("A" if unknown[-1] != "A" else "B")
    with pytest.raises(InvalidApiKeyError):
        await service.verify(malformed)
    assert _native.api_key_refused(service.digest(malformed))
    service.invalidate(None)
    assert _native.api_keys_refused_len() == 0


async def test_a_refusal_read_while_a_key_changed_is_not_pushed(service: ApiKeyService) -> None:
    from bastion.apikeys.errors import InvalidApiKeyError
    from bastion.crypto import generate_api_key

    unknown = generate_api_key()
    inner = service.db.api_keys.find_by_digest

    async def racing(digest: str) -> Any:
        found = await inner(digest)
        service.invalidate("created-meanwhile")  # the change feed, during the read
        return found

    service.db.api_keys.find_by_digest = racing  # type: ignore[method-assign]
    with pytest.raises(InvalidApiKeyError):
        await service.verify(unknown)
    assert not _native.api_key_refused(service.digest(unknown))
    assert service.digest(unknown) not in service._unknown


async def test_a_revocation_by_another_process_stops_the_key_within_a_second(
    service: ApiKeyService,
) -> None:
    # Another process (the CLI, another node) on the same database and shared state.
    other = ApiKeyService(service.db, service.settings, service.shared)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop, flush_interval=3600))
    try:
        record, secret = await other.create(ApiKeySpec(name="k", scopes=["orders:read"]))
        await service.verify(secret)
        assert decide(KEY_ROUTE, secret) is not None
        await wait_until_async(lambda: subscribed(service.shared, API_KEYS_CHANNEL))
        await other.revoke(record.id)
        deadline = time.monotonic() + 1.0
        while decide(KEY_ROUTE, secret) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert decide(KEY_ROUTE, secret) is None
    finally:
        stop.set()
        await task


async def test_an_ip_allow_list_is_checked_natively(service: ApiKeyService) -> None:
    record, secret = await service.create(
        ApiKeySpec(name="ip", scopes=["orders:read"], ip_allow=["10.0.0.0/8"])
    )
    await service.verify(secret, ip="10.1.2.3")
    headers = [("authorization", f"Bearer {secret}")]
    inside = _native.authn_decide(KEY_ROUTE, "orders", "GET", headers, None, "10.9.9.9")
    assert inside is not None and inside["key_id"] == record.id
    assert _native.authn_decide(KEY_ROUTE, "orders", "GET", headers, None, "11.0.0.1") is None
    assert _native.authn_decide(KEY_ROUTE, "orders", "GET", headers) is None


async def test_a_keys_own_limits_travel_compiled(service: ApiKeyService) -> None:
    record, secret = await service.create(
        ApiKeySpec(
            name="limited",
            scopes=["orders:read"],
            rate_limits=[{"rate": "5/second"}, {"rate": "100/minute", "burst": 20}],
        )
    )
    assert json.loads(native_push.api_key_record(record))["key_limits"] == [
        {"rate": 5, "period": 1.0, "burst": 5, "name": "5/second"},
        {"rate": 100, "period": 60.0, "burst": 20, "name": "100/minute"},
    ]
    await service.verify(secret)
    # The native limit step applies them: such a key is admitted natively.
    assert decide(KEY_ROUTE, secret) is not None


async def test_a_key_for_other_routes_is_not_admitted(service: ApiKeyService) -> None:
    spec = ApiKeySpec(name="routes", scopes=["orders:read"], routes=["billing"])
    record, secret = await service.create(spec)
    await service.verify(secret, ip="10.1.2.3")
    assert _native.api_key_cached(record.digest)
    assert decide(KEY_ROUTE, secret) is None  # authorization's 403 `route_not_allowed`


async def test_native_uses_reach_the_last_used_batch(service: ApiKeyService) -> None:
    record, secret = await service.create(ApiKeySpec(name="k", scopes=["orders:read"]))
    await service.verify(secret)
    assert await service.flush_last_used() == 1
    first = (await service.get(record.id)).last_used_at
    assert first is not None
    await asyncio.sleep(0.01)
    assert decide(KEY_ROUTE, secret) is not None  # served natively: Python never saw it
    assert await service.flush_last_used() == 1
    later = (await service.get(record.id)).last_used_at
    assert later is not None and later > first
    assert await service.flush_last_used() == 0


async def test_a_peppered_digest_matches(migrated_sqlite_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "bastion.db"
    shutil.copyfile(migrated_sqlite_file, path)
    settings = Settings(issuer=ISSUER, api_keys={"pepper": "pepper-for-tests"})
    service = await key_service(path, settings)
    try:
        record, secret = await service.create(ApiKeySpec(name="k", scopes=["orders:read"]))
        await service.verify(secret)
        identity = decide(KEY_ROUTE, secret)
        assert identity is not None and identity["key_id"] == record.id
    finally:
        await service.shared.close()
        await service.db.close()


# -- bastion's own JWTs ----------------------------------------------------------


class Tokens:
    def __init__(self) -> None:
        self.key = SigningKeyPair.generate("ES256")
        self.keys = PublicKeySet([self.key.public_key])
        self.shared = MemorySharedState()
        self.verifier = AccessTokenVerifier(lambda: self.keys, issuer=ISSUER, shared=self.shared)
        self.authn = JwtAuthenticator(
            self.verifier, shared=self.shared, issuer=ISSUER, default_audience=ISSUER
        )
        native_push.install(Settings(issuer=ISSUER), lambda: self.keys)
        native_push.following(True)

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        base: dict[str, Any] = {
            "iss": ISSUER,
            "sub": "user:alice",
            "aud": ISSUER,
            "client_id": "web-app",
            "scope": "orders:read profile",
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }
        base.update(changes)
        return base

    def sign(self, claims: dict[str, Any]) -> str:
        return sign_jwt(claims, self.key, typ="at+jwt")


@pytest.fixture
async def tokens() -> AsyncIterator[Tokens]:
    setup = Tokens()
    try:
        yield setup
    finally:
        native_push.following(False)
        await setup.shared.close()


async def test_a_token_python_accepted_is_allowed_natively(tokens: Tokens) -> None:
    token = tokens.sign(tokens.claims())
    assert decide(JWT_ROUTE, token) is None
    await tokens.authn.authenticate(token)
    assert _native.token_cached(token)
    assert decide(JWT_ROUTE, token) == {
        "method": "jwt",
        "subject": "user:alice",
        "client_id": "web-app",
        "scopes": ["orders:read", "profile"],
        "key_id": None,
        "routes": None,
    }
    # another route's audience, or scopes the token lacks: Python decides
    other = section(auth=["jwt"], jwt={"audience": "https://billing.test"})
    assert decide(other, token) is None
    assert decide(section(auth=["jwt"], scopes=["orders:write"]), token) is None


async def test_revocation_client_and_signing_key_changes(tokens: Tokens) -> None:
    claims = tokens.claims()
    token = tokens.sign(claims)
    await tokens.authn.authenticate(token)
    tokens.authn.forget(f"{claims['jti']} {claims['exp']}")  # a revoked-tokens delivery
    assert decide(JWT_ROUTE, token) is None
    assert not _native.token_cached(token)

    token = tokens.sign(tokens.claims())
    await tokens.authn.authenticate(token)
    tokens.authn.forget_client("web-app")  # a clients delivery
    assert decide(JWT_ROUTE, token) is None

    await tokens.authn.authenticate(token)
    assert decide(JWT_ROUTE, token) is not None
    tokens.authn.forget_all("kid-1")  # a signing-keys delivery
    assert decide(JWT_ROUTE, token) is None
    assert not _native.signing_key_known(tokens.key.kid)
    # Python verifies again and the native core takes the current keys on demand
    await tokens.authn.authenticate(token)
    assert _native.signing_key_known(tokens.key.kid)
    assert decide(JWT_ROUTE, token) is not None

    native_push.following(False)  # a subscription lost: hits go back to Python
    assert decide(JWT_ROUTE, token) is None


async def test_tokens_python_refuses_or_keeps_are_not_cached(tokens: Tokens) -> None:
    claims = tokens.claims()
    token = tokens.sign(claims)
    await tokens.verifier.revoke(claims)
    with pytest.raises(InvalidBearerTokenError):
        await tokens.authn.authenticate(token)
    assert not _native.token_cached(token)
    bound = tokens.sign(tokens.claims(cnf={"jkt": "abc"}))
    assert native_push.token_verified(bound, 60.0) == "sender_constrained"
    exchanged = tokens.sign(tokens.claims(client_id="apikey:k1"))
    assert native_push.token_verified(exchanged, 60.0) == "exchanged_from_api_key"
    forged = tokens.sign(tokens.claims()).rsplit(".", 1)[0] + ".AAAA"
    assert native_push.token_verified(forged, 60.0) == "bad_signature"


async def test_other_tokens_of_an_active_client_are_verified_natively(tokens: Tokens) -> None:
    first = tokens.sign(tokens.claims())
    second_claims = tokens.claims()
    second = tokens.sign(second_claims)
    native_push.verify_misses(True)
    try:
        assert decide(JWT_ROUTE, first) is None  # the client is not known active yet
        await tokens.authn.authenticate(first)  # Python checks it (and the client)
        identity = decide(JWT_ROUTE, second)  # never seen by Python
        assert identity is not None and identity["client_id"] == "web-app"
        assert _native.token_cached(second)
        # a change-feed revocation (replay included) reaches the native deny-list
        third_claims = tokens.claims()
        third = tokens.sign(third_claims)
        await native_push.apply_revocation(f"{third_claims['jti']} {third_claims['exp']}")
        assert decide(JWT_ROUTE, third) is None
        # a client change: its status goes, its tokens go back to Python
        tokens.authn.forget_client("web-app")
        assert decide(JWT_ROUTE, second) is None
        assert decide(JWT_ROUTE, tokens.sign(tokens.claims())) is None
        # another client's tokens always go to Python first
        assert decide(JWT_ROUTE, tokens.sign(tokens.claims(client_id="cli"))) is None
    finally:
        native_push.verify_misses(False)


async def test_a_revocation_on_the_channel_stops_a_token_within_a_second(tokens: Tokens) -> None:
    native_push.following(False)
    stop = asyncio.Event()
    task = asyncio.create_task(tokens.authn.run(stop))
    try:
        for _ in range(100):
            if tokens.authn.following:
                break
            await asyncio.sleep(0.01)
        assert tokens.authn.following
        claims = tokens.claims()
        token = tokens.sign(claims)
        await tokens.authn.authenticate(token)
        assert decide(JWT_ROUTE, token) is not None
        message = f"{claims['jti']} {claims['exp']}"
        await tokens.shared.publish(feed.REVOKED_TOKENS, message.encode())
        deadline = time.monotonic() + 1.0
        while decide(JWT_ROUTE, token) is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert decide(JWT_ROUTE, token) is None
    finally:
        stop.set()
        await task


# -- trusted external issuers ---------------------------------------------------


async def test_external_issuer_keys_are_pushed_after_each_fetch_and_verify_natively() -> None:
    from bastion.gateway.authn.external_jwt import TrustedIssuer
    from bastion.gateway.authn.jwks_cache import JwksCache
    from bastion.settings.oauth import TrustedIssuerSettings
    from bastion.settings.routes import RouteJwtSettings
    from gateway.idp_support import running_idp

    async with running_idp() as idp:
        settings = Settings(
            issuer=ISSUER,
            trusted_issuers=[TrustedIssuerSettings(issuer=idp.url, audiences=["https://api"])],
        )
        route = RouteSettings(
            name="orders",
            match=RouteMatch(path="/orders", methods=["GET"]),
            upstream="http://u:9",
            auth=["jwt"],
            jwt=RouteJwtSettings(issuers=[idp.url]),
        )
        compiled = auth.section(route, settings)
        assert isinstance(compiled, dict)
        ext_route = json.dumps(compiled)
        native_push.install(settings, None)
        monotonic = [1000.0]
        pushed: list[tuple[str, float]] = []

        def on_keys(issuer: str, keys: PublicKeySet, ttl: float) -> None:
            pushed.append((issuer, ttl))
            native_push.issuer_keys(issuer, keys, ttl)

        jwks = JwksCache(
            idp.url,
            cache_ttl=600,
            min_refresh_interval=30,
            clock=lambda: monotonic[0],
            on_keys=on_keys,
        )
        shared = MemorySharedState()
        authn = JwtAuthenticator(
            AccessTokenVerifier(lambda: PublicKeySet(), issuer=ISSUER, shared=shared),
            shared=shared,
            issuer=ISSUER,
            default_audience=ISSUER,
            trusted_issuers={idp.url: TrustedIssuer(jwks, audiences=["https://api"])},
        )
        issuers = frozenset({idp.url})

        def token(key: SigningKeyPair | None = None, **claims: Any) -> str:
            now = int(time.time())
            base = {
                "iss": idp.url,
                "sub": "alice",
                "aud": "https://api",
                "scope": "s",
                "iat": now,
                "exp": now + 300,
                "jti": uuid.uuid4().hex,
            }
            return sign_jwt({**base, **claims}, key or idp.key, typ="at+jwt")

        native_push.following(True)
        native_push.verify_misses(True)
        try:
            first = token()
            assert decide(ext_route, first) is None  # no keys natively yet
            await authn.authenticate(first, issuers=issuers)
            assert pushed == [(idp.url, 600.0)]
            assert _native.issuer_key_known(idp.url, idp.key.kid)
            allowed = decide(ext_route, token())
            assert allowed is not None
            assert (allowed["method"], allowed["subject"], allowed["scopes"]) == (
                "jwt",
                "alice",
                ["s"],
            )
            # refused natively means deferred: Python gives the 401
            for forged in (
                token(aud="https://other"),
                token(exp=int(time.time()) - 100),
                token(key=SigningKeyPair.generate("ES256")),
            ):
                assert decide(ext_route, forged) is None
                with pytest.raises(InvalidBearerTokenError):
                    await authn.authenticate(forged, issuers=issuers)
            # rotation: the new kid defers until Python refetched (and pushed) the set
            new = SigningKeyPair.generate("RS256")
            idp.keys = [new]
            monotonic[0] += 30
            rotated = token(key=new)
            assert decide(ext_route, rotated) is None
            await authn.authenticate(rotated, issuers=issuers)
            assert len(pushed) == 2  # (the forged kid came within the refresh interval)
            assert decide(ext_route, token(key=new)) is not None
            # verification of misses off: nothing uncached is served natively
            native_push.verify_misses(False)
            assert decide(ext_route, token(key=new)) is None
        finally:
            native_push.verify_misses(False)
            native_push.install(Settings(issuer=ISSUER), None)
