"""The jwt method with trusted external issuers: real local IdPs serving discovery + JWKS.

One ``bastion serve`` trusts four local IdPs (``gateway.idp_support.FakeIdP`` over HTTP):
``idp`` (routes ``ext``, ``both`` — ``self`` and the IdP, its own audience —, ``role`` —
a role —, ``tenant`` — a claim; ``own`` takes bastion's own tokens only), ``stale`` (a 1 s
key-set cache, refetched at most every 1 s, route ``stale``), ``kids`` (a 2 s minimum
refresh interval, route ``kids``)
and ``dead`` (down from the start, route ``dead``). Keys are made with bastion.crypto; the
server's own tokens are signed with its active key (read from its database). The JWKS
cache runs on the real clock, so its intervals are waited for (1-2 s) rather than faked.
The fetcher itself (``JwksCache`` with a configured ``jwks_uri``) is also called directly.
A revocation of an external token's ``jti`` is published by another process's verifier
over a real Redis (a second server for that test).
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from _support import EchoThread
from _support.gateway_authn import (
    own_client,
    own_signing_key,
    refused,
    refused_all,
    serve_configured,
    upstream_saw,
)
from _support.gateway_server import GatewayServer, fresh_echo
from bastion.crypto import PublicKeySet, SigningKeyPair, sign_jwt
from bastion.gateway.authn.jwks_cache import JwksCache
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.storage.shared import open_shared_state
from gateway.idp_support import FakeIdP, IdPThread

OWN = "https://auth.test"
API = "https://api.test"
IDPS = ("idp", "stale", "kids", "dead")


def ext_claims(idp: FakeIdP, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": idp.url,
        "sub": "alice@idp",
        "aud": API,
        "client_id": "spa",
        "scope": "orders:read",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "roles": ["reader"],
    }
    base.update(overrides)
    return base


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def with_header(token: str, header: dict[str, Any]) -> str:
    """``token`` with its header replaced (payload and signature kept)."""
    _, payload, signature = token.split(".")
    return ".".join([_b64(orjson.dumps(header)), payload, signature])


@pytest.fixture(scope="module")
def idps() -> Iterator[dict[str, FakeIdP]]:
    threads = {name: IdPThread() for name in IDPS}
    threads["dead"].idp.down = True
    try:
        yield {name: thread.idp for name, thread in threads.items()}
    finally:
        for thread in threads.values():
            thread.close()


@pytest.fixture(scope="module")
def echo_upstream() -> Iterator[EchoThread]:
    echo = EchoThread()
    try:
        yield echo
    finally:
        echo.close()


def _config(idps: dict[str, FakeIdP], up: str) -> tuple[str, str]:
    """(routes, settings) of the module's server."""
    policy = {
        "stale": "cache_ttl: 1\n    min_refresh_interval: 1",
        "kids": "min_refresh_interval: 2",
    }
    settings = (
        f"tls: off\ntrusted_proxies: [192.0.2.1]\nissuer: {OWN}\ntrusted_issuers:\n"
        + "".join(
            f"  - issuer: {idps[name].url}\n    audiences: [{API}]\n"
            f"    algorithms: [ES256, RS256]\n    {policy.get(name, 'min_refresh_interval: 1')}\n"
            for name in IDPS
        )
    )
    idp = idps["idp"].url
    routes = {
        "ext": f"jwt: {{issuers: [{idp}]}}",
        "both": f"jwt: {{issuers: [self, {idp}], audience: {API}/both}}",
        "own": "",
        "role": f"jwt: {{issuers: [{idp}]}}\n    roles: [admin]",
        "tenant": f"jwt: {{issuers: [{idp}]}}\n    claims: {{tenant: acme}}",
        **{name: f"jwt: {{issuers: [{idps[name].url}]}}" for name in IDPS[1:]},
    }
    text = "".join(
        f"  - name: {name}\n    match: {{path: /{name}}}\n    upstream: {up}\n    auth: [jwt]\n"
        + (f"    {extra}\n" if extra else "")
        for name, extra in routes.items()
    )
    return text, settings


@pytest.fixture(scope="module")
def served(
    idps: dict[str, FakeIdP], echo_upstream: EchoThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    routes, settings = _config(idps, echo_upstream.server.url)
    with serve_configured(tmp_path_factory.mktemp("external-jwt"), routes, settings) as server:
        yield server


@pytest.fixture
def idp(idps: dict[str, FakeIdP]) -> Iterator[FakeIdP]:
    """The main IdP; up again after each test."""
    yield idps["idp"]
    idps["idp"].down = False


@pytest.fixture
def gateway(served: GatewayServer, echo_upstream: EchoThread) -> Iterator[httpx.Client]:
    fresh_echo(echo_upstream)
    with served.client() as client:
        yield client


CHALLENGE = 'Bearer realm="bastion", error="invalid_token"'


def invalid(served: GatewayServer, response: httpx.Response, route: str = "ext") -> None:
    refused(served, response, 401, "invalid_token", route)
    assert response.headers["www-authenticate"] == CHALLENGE


def test_external_token_is_accepted_via_discovery(
    gateway: httpx.Client, idp: FakeIdP, echo_upstream: EchoThread
) -> None:
    token = sign_jwt(ext_claims(idp), idp.key, typ="at+jwt")
    seen = upstream_saw(gateway.get("/ext/x", headers=bearer(token)))
    assert len(echo_upstream.server.received) == 1
    assert seen["x-bastion-subject"] == "alice@idp"
    assert seen["x-bastion-client"] == "spa"
    assert "authorization" not in seen
    assert idp.hits == {"discovery": 1, "jwks": 1, "introspect": 0}
    # Verified once, then served from the token cache: no more fetches.
    assert gateway.get("/ext/x", headers=bearer(token)).status_code == 200
    assert idp.hits["jwks"] == 1


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://other.test"}, "wrong_audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"sub": 7}, "invalid_claim"),
    ],
)
def test_wrong_claims_are_refused(
    gateway: httpx.Client,
    served: GatewayServer,
    idp: FakeIdP,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    # (``reason``: Python's precise reason, for its log only; every refusal is one 401.)
    token = sign_jwt(ext_claims(idp, **overrides), idp.key, typ="at+jwt")
    invalid(served, gateway.get("/ext/x", headers=bearer(token)))


def test_untrusted_issuer_is_refused(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    # Not a trusted issuer, so it is read as bastion's own: not allowed on this route.
    token = sign_jwt(ext_claims(idp, iss="https://evil.test"), idp.key, typ="at+jwt")
    invalid(served, gateway.get("/ext/x", headers=bearer(token)))


def test_own_token_is_refused_where_only_the_external_issuer_is_accepted(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    own = {**ext_claims(idp), "iss": OWN, "aud": OWN, "client_id": own_client(served)["client_id"]}
    token = sign_jwt(own, own_signing_key(served), typ="at+jwt")
    invalid(served, gateway.get("/ext/x", headers=bearer(token)))
    # ... and accepted on the route that lists self, for bastion's default audience.
    assert gateway.get("/own/x", headers=bearer(token)).status_code == 200


def test_external_token_refused_on_an_own_only_route_even_when_cached(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    token = sign_jwt(ext_claims(idp), idp.key, typ="at+jwt")
    assert gateway.get("/ext/x", headers=bearer(token)).status_code == 200
    invalid(served, gateway.get("/own/x", headers=bearer(token)), "own")


def test_route_audience_overrides_the_issuer_audiences(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    plain = sign_jwt(ext_claims(idp), idp.key, typ="at+jwt")
    invalid(served, gateway.get("/both/x", headers=bearer(plain)), "both")
    scoped = sign_jwt(ext_claims(idp, aud=[f"{API}/both", "x"]), idp.key, typ="at+jwt")
    assert gateway.get("/both/x", headers=bearer(scoped)).status_code == 200


def test_wrong_typ_alg_and_unknown_kid_are_refused(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    claims = ext_claims(idp)
    invalid(served, gateway.get("/ext/x", headers=bearer(sign_jwt(claims, idp.key, typ="JWT"))))
    # An Ed25519 key the IdP publishes is skipped: EdDSA is not in this issuer's allow-list.
    ed = SigningKeyPair.generate("EdDSA")
    idp.keys.append(ed)
    try:
        time.sleep(1.1)  # past the minimum refresh interval: an unknown kid refetches
        invalid(served, gateway.get("/ext/x", headers=bearer(sign_jwt(claims, ed, typ="at+jwt"))))
    finally:
        idp.keys.remove(ed)
    stranger = SigningKeyPair.generate("ES256")
    token = sign_jwt(claims, stranger, typ="at+jwt")
    invalid(served, gateway.get("/ext/x", headers=bearer(token)))
    # A token claiming another algorithm for a known kid.
    forged = with_header(
        sign_jwt(claims, idp.key, typ="at+jwt"),
        {"alg": "RS256", "kid": idp.key.kid, "typ": "at+jwt"},
    )
    invalid(served, gateway.get("/ext/x", headers=bearer(forged)))


def test_key_rotation_at_the_idp_is_picked_up(gateway: httpx.Client, idp: FakeIdP) -> None:
    first = sign_jwt(ext_claims(idp), idp.key, typ="at+jwt")
    assert gateway.get("/ext/x", headers=bearer(first)).status_code == 200
    fetched = idp.hits["jwks"]
    new = SigningKeyPair.generate("ES256")
    idp.keys = [new]
    time.sleep(1.1)  # the minimum interval since the last fetch has passed
    rotated = sign_jwt(ext_claims(idp), new, typ="at+jwt")
    assert gateway.get("/ext/x", headers=bearer(rotated)).status_code == 200
    assert idp.hits["jwks"] == fetched + 1


def test_random_kids_cause_at_most_one_fetch_per_interval(
    gateway: httpx.Client, served: GatewayServer, idps: dict[str, FakeIdP]
) -> None:
    kids = idps["kids"]  # min_refresh_interval: 2
    good = sign_jwt(ext_claims(kids), kids.key, typ="at+jwt")
    assert gateway.get("/kids/x", headers=bearer(good)).status_code == 200
    time.sleep(2.1)
    fetched = kids.hits["jwks"]
    signed = sign_jwt(ext_claims(kids), SigningKeyPair.generate("ES256"), typ="at+jwt")
    started = time.monotonic()
    responses = []
    for _ in range(100):
        header = {"alg": "ES256", "kid": uuid.uuid4().hex, "typ": "at+jwt"}
        responses.append(gateway.get("/kids/x", headers=bearer(with_header(signed, header))))
    for response in responses:
        assert response.headers["www-authenticate"] == CHALLENGE
    refused_all(served, responses, 401, "invalid_token", "kids")
    intervals = int((time.monotonic() - started) / 2.0)
    # One refetch in this interval (and one per later interval), not 100.
    assert 1 <= kids.hits["jwks"] - fetched <= 1 + intervals


def test_old_keys_keep_serving_while_the_idp_is_down(
    gateway: httpx.Client, idps: dict[str, FakeIdP]
) -> None:
    stale = idps["stale"]  # cache_ttl: 1
    token = sign_jwt(ext_claims(stale), stale.key, typ="at+jwt")
    assert gateway.get("/stale/x", headers=bearer(token)).status_code == 200
    fetched = stale.hits["jwks"]
    stale.down = True
    try:
        time.sleep(1.2)  # the cached set is stale: a refetch is tried and fails
        again = sign_jwt(ext_claims(stale), stale.key, typ="at+jwt")
        assert gateway.get("/stale/x", headers=bearer(again)).status_code == 200
        assert stale.hits["jwks"] == fetched + 1
    finally:
        stale.down = False


def test_idp_down_from_the_start_is_503(
    gateway: httpx.Client, served: GatewayServer, idps: dict[str, FakeIdP]
) -> None:
    dead = idps["dead"]
    token = sign_jwt(ext_claims(dead), dead.key, typ="at+jwt")
    response = gateway.get("/dead/x", headers=bearer(token))
    refused(served, response, 503, "issuer_unavailable", "dead")


def test_revoked_external_jti_is_honoured(
    idps: dict[str, FakeIdP],
    echo_upstream: EchoThread,
    tmp_path_factory: pytest.TempPathFactory,
    redis_url: str,
    redis_prefix: str,
) -> None:
    idp = idps["idp"]
    routes, settings = _config(idps, echo_upstream.server.url)
    settings += f"shared: {{url: '{redis_url}', key_prefix: '{redis_prefix}'}}\n"
    claims = ext_claims(idp)
    token = sign_jwt(claims, idp.key, typ="at+jwt")
    directory = tmp_path_factory.mktemp("jti")
    with serve_configured(directory, routes, settings) as server, server.client() as client:
        assert client.get("/ext/x", headers=bearer(token)).status_code == 200
        assert client.get("/ext/x", headers=bearer(token)).status_code == 200  # cached

        async def revoke() -> None:  # as another node's verifier revokes it
            shared = await open_shared_state(redis_url, key_prefix=redis_prefix)
            try:
                other = AccessTokenVerifier(lambda: PublicKeySet([]), issuer=OWN, shared=shared)
                await other.revoke(claims)
            finally:
                await shared.close()

        asyncio.run(revoke())
        deadline = time.monotonic() + 5
        while (response := client.get("/ext/x", headers=bearer(token))).status_code == 200:
            assert time.monotonic() < deadline, "the revocation was not followed"
            time.sleep(0.05)
        invalid(server, response)


def test_roles_and_claims_are_enforced(
    gateway: httpx.Client, served: GatewayServer, idp: FakeIdP
) -> None:
    reader = sign_jwt(ext_claims(idp), idp.key, typ="at+jwt")
    role = gateway.get("/role/x", headers=bearer(reader))
    refused(served, role, 403, "missing_role", "role", step="authorize")
    assert role.json()["role"] == "admin"
    admin = sign_jwt(ext_claims(idp, roles=["admin"]), idp.key, typ="at+jwt")
    assert gateway.get("/role/x", headers=bearer(admin)).status_code == 200
    claim = gateway.get("/tenant/x", headers=bearer(reader))
    refused(served, claim, 403, "claim_mismatch", "tenant", step="authorize")
    assert claim.json()["claim"] == "tenant"
    acme = sign_jwt(ext_claims(idp, tenant="acme"), idp.key, typ="at+jwt")
    assert gateway.get("/tenant/x", headers=bearer(acme)).status_code == 200


async def test_configured_jwks_uri_skips_discovery() -> None:
    thread = await asyncio.to_thread(IdPThread)
    try:
        idp = thread.idp
        cache = JwksCache(idp.url, jwks_uri=idp.url + "/keys", algorithms=("ES256",))
        keys = await cache.get()
        assert keys.kids() == (idp.key.kid,)
        assert idp.hits["discovery"] == 0
    finally:
        await asyncio.to_thread(thread.close)
