"""The jwt method with trusted external issuers: a real local IdP serving discovery + JWKS.

Keys are made with bastion.crypto; tokens go through the Gateway with route
stand-ins carrying ``jwt: {issuers, audience}``; the JWKS cache runs on a fake
monotonic clock so refresh intervals are exact, not timed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from bastion.crypto import PublicKeySet, SigningKeyPair, sign_jwt
from bastion.demo.echo import EchoServer
from bastion.gateway import Gateway, InvalidBearerTokenError
from bastion.gateway.authn.external_jwt import TrustedIssuer
from bastion.gateway.authn.jwks_cache import JwksCache, JwksUnavailableError
from bastion.gateway.authn.jwt import JwtAuthenticator
from bastion.oauth.tokens import REVOKED_JTI_PREFIX, AccessTokenVerifier
from bastion.storage.shared import MemorySharedState
from gateway.gateway_support import Match, Route, call
from gateway.idp_support import FakeIdP, running_idp

OWN = "https://auth.test"


@dataclass(frozen=True)
class JwtPolicy:
    issuers: Sequence[str] = ("self",)
    audience: str | None = None


@dataclass(frozen=True)
class JwtRoute(Route):
    jwt: JwtPolicy | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    roles: Sequence[str] = ()
    roles_claim: str = "roles"


@dataclass
class Setup:
    idp: FakeIdP
    jwks: JwksCache
    authn: JwtAuthenticator
    gateway: Gateway
    shared: MemorySharedState
    own_key: SigningKeyPair
    monotonic: list[float]


def ext_claims(idp: FakeIdP, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": idp.url,
        "sub": "alice@idp",
        "aud": "https://api.test",
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


@pytest.fixture
async def setup(echo: EchoServer) -> AsyncIterator[Setup]:
    async with running_idp() as idp:
        monotonic = [1000.0]
        jwks = JwksCache(
            idp.url,
            algorithms=("ES256", "RS256"),
            cache_ttl=600,
            min_refresh_interval=30,
            clock=lambda: monotonic[0],
        )
        shared = MemorySharedState()
        own_key = SigningKeyPair.generate("ES256")
        own_keys = PublicKeySet([own_key.public_key])
        verifier = AccessTokenVerifier(lambda: own_keys, issuer=OWN, shared=shared)
        authn = JwtAuthenticator(
            verifier,
            shared=shared,
            issuer=OWN,
            default_audience=OWN,
            trusted_issuers={idp.url: TrustedIssuer(jwks, audiences=["https://api.test"])},
        )
        routes = [
            JwtRoute(
                "ext",
                Match("/ext"),
                echo.url,
                public=False,
                auth=("jwt",),
                jwt=JwtPolicy(issuers=(idp.url,)),
            ),
            JwtRoute(
                "both",
                Match("/both"),
                echo.url,
                public=False,
                auth=("jwt",),
                jwt=JwtPolicy(issuers=("self", idp.url), audience="https://api.test/both"),
            ),
            JwtRoute("own", Match("/own"), echo.url, public=False, auth=("jwt",)),
            JwtRoute(
                "admin",
                Match("/admin"),
                echo.url,
                public=False,
                auth=("jwt",),
                jwt=JwtPolicy(issuers=(idp.url,)),
                roles=("admin",),
            ),
            JwtRoute(
                "tenant",
                Match("/tenant"),
                echo.url,
                public=False,
                auth=("jwt",),
                jwt=JwtPolicy(issuers=(idp.url,)),
                claims={"tenant": "acme"},
            ),
        ]
        gateway = Gateway(routes, authenticators={"jwt": authn})
        try:
            yield Setup(idp, jwks, authn, gateway, shared, own_key, monotonic)
        finally:
            await gateway.shutdown()
            await shared.close()


async def refused(setup: Setup, token: str, path: str = "/ext/x") -> str:
    with pytest.raises(InvalidBearerTokenError) as caught:
        await call(setup.gateway, "GET", path, headers=bearer(token))
    return caught.value.reason


async def test_external_token_is_accepted_via_discovery(setup: Setup, echo: EchoServer) -> None:
    token = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    result = await call(setup.gateway, "GET", "/ext/x", headers=bearer(token))
    assert result.status == 200
    (seen,) = echo.received
    assert seen.header("x-bastion-subject") == "alice@idp"
    assert seen.header("x-bastion-client") == "spa"
    assert seen.header("authorization") is None
    assert setup.idp.hits == {"discovery": 1, "jwks": 1, "introspect": 0}
    # Verified once, then served from the token cache: no more fetches, no re-verify.
    await call(setup.gateway, "GET", "/ext/x", headers=bearer(token))
    assert setup.idp.hits["jwks"] == 1
    assert len(setup.authn) == 1


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "https://other.test"}, "wrong_audience"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not_yet_valid"),
        ({"sub": 7}, "invalid_claim"),
    ],
)
async def test_wrong_claims_are_refused(
    setup: Setup, overrides: dict[str, Any], reason: str
) -> None:
    token = sign_jwt(ext_claims(setup.idp, **overrides), setup.idp.key, typ="at+jwt")
    assert await refused(setup, token) == reason


async def test_untrusted_issuer_is_refused(setup: Setup) -> None:
    token = sign_jwt(ext_claims(setup.idp, iss="https://evil.test"), setup.idp.key, typ="at+jwt")
    # Not a trusted issuer, so it is read as bastion's own: not allowed on this route.
    assert await refused(setup, token) == "wrong_issuer"


async def test_own_token_is_refused_where_only_the_external_issuer_is_accepted(
    setup: Setup,
) -> None:
    own = {**ext_claims(setup.idp), "iss": OWN, "aud": OWN}
    token = sign_jwt(own, setup.own_key, typ="at+jwt")
    assert await refused(setup, token, "/ext/x") == "wrong_issuer"
    # ... and accepted on the route that lists self, for bastion's default audience.
    assert (await call(setup.gateway, "GET", "/own/x", headers=bearer(token))).status == 200


async def test_external_token_refused_on_an_own_only_route_even_when_cached(
    setup: Setup,
) -> None:
    token = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/ext/x", headers=bearer(token))).status == 200
    assert await refused(setup, token, "/own/x") == "wrong_issuer"


async def test_route_audience_overrides_the_issuer_audiences(setup: Setup) -> None:
    plain = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    assert await refused(setup, plain, "/both/x") == "wrong_audience"
    scoped = sign_jwt(
        ext_claims(setup.idp, aud=["https://api.test/both", "x"]), setup.idp.key, typ="at+jwt"
    )
    assert (await call(setup.gateway, "GET", "/both/x", headers=bearer(scoped))).status == 200


async def test_wrong_typ_alg_and_unknown_kid_are_refused(setup: Setup) -> None:
    claims = ext_claims(setup.idp)
    assert await refused(setup, sign_jwt(claims, setup.idp.key, typ="JWT")) == "wrong_typ"
    # An Ed25519 key the IdP publishes is skipped: EdDSA is not in this issuer's allow-list.
    ed = SigningKeyPair.generate("EdDSA")
    setup.idp.keys.append(ed)
    setup.monotonic[0] += 31
    assert await refused(setup, sign_jwt(claims, ed, typ="at+jwt")) == "unknown_kid"
    stranger = SigningKeyPair.generate("ES256")
    assert await refused(setup, sign_jwt(claims, stranger, typ="at+jwt")) == "unknown_kid"
    # A token claiming another algorithm for a known kid.
    header_alg = sign_jwt(claims, setup.idp.key, typ="at+jwt").split(".")
    import base64

    import orjson

    bad_header = (
        base64.urlsafe_b64encode(
            orjson.dumps({"alg": "RS256", "kid": setup.idp.key.kid, "typ": "at+jwt"})
        )
        .rstrip(b"=")
        .decode()
    )
    forged = ".".join([bad_header, header_alg[1], header_alg[2]])
    assert await refused(setup, forged) == "alg_not_allowed"


async def test_key_rotation_at_the_idp_is_picked_up(setup: Setup) -> None:
    first = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/ext/x", headers=bearer(first))).status == 200
    new = SigningKeyPair.generate("ES256")
    setup.idp.keys = [new]
    setup.monotonic[0] += 30  # the minimum interval since the last fetch has passed
    rotated = sign_jwt(ext_claims(setup.idp), new, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/ext/x", headers=bearer(rotated))).status == 200
    assert setup.idp.hits["jwks"] == 2


async def test_random_kids_cause_at_most_one_fetch_per_interval(setup: Setup) -> None:
    good = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    await call(setup.gateway, "GET", "/ext/x", headers=bearer(good))
    assert setup.idp.hits["jwks"] == 1
    setup.monotonic[0] += 30
    attacker = SigningKeyPair.generate("ES256")
    payload = ext_claims(setup.idp)
    import base64

    import orjson

    signed = sign_jwt(payload, attacker, typ="at+jwt").split(".")
    for _ in range(1000):
        header = (
            base64.urlsafe_b64encode(
                orjson.dumps({"alg": "ES256", "kid": uuid.uuid4().hex, "typ": "at+jwt"})
            )
            .rstrip(b"=")
            .decode()
        )
        assert await refused(setup, ".".join([header, signed[1], signed[2]])) == "unknown_kid"
    assert setup.idp.hits["jwks"] == 2  # one refetch in this interval, not 1000
    setup.monotonic[0] += 30
    header = (
        base64.urlsafe_b64encode(
            orjson.dumps({"alg": "ES256", "kid": "next-interval", "typ": "at+jwt"})
        )
        .rstrip(b"=")
        .decode()
    )
    assert await refused(setup, ".".join([header, signed[1], signed[2]])) == "unknown_kid"
    assert setup.idp.hits["jwks"] == 3


async def test_old_keys_keep_serving_while_the_idp_is_down(setup: Setup) -> None:
    token = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/ext/x", headers=bearer(token))).status == 200
    setup.idp.down = True
    setup.monotonic[0] += 601  # the cached set is stale: a refetch is tried and fails
    setup.authn.clear()
    again = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/ext/x", headers=bearer(again))).status == 200
    assert setup.idp.hits["jwks"] == 2


async def test_idp_down_from_the_start_is_503(setup: Setup) -> None:
    setup.idp.down = True
    token = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    with pytest.raises(JwksUnavailableError) as caught:
        await call(setup.gateway, "GET", "/ext/x", headers=bearer(token))
    assert caught.value.status == 503
    assert caught.value.code == "issuer_unavailable"


async def test_revoked_external_jti_is_honoured(setup: Setup) -> None:
    claims = ext_claims(setup.idp)
    token = sign_jwt(claims, setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/ext/x", headers=bearer(token))).status == 200
    await setup.shared.set(REVOKED_JTI_PREFIX + claims["jti"], b"1", ttl=60)
    assert await refused(setup, token) == "revoked"


async def test_roles_and_claims_are_enforced(setup: Setup) -> None:
    from bastion.gateway.authz import ClaimMismatchError, MissingRoleError

    reader = sign_jwt(ext_claims(setup.idp), setup.idp.key, typ="at+jwt")
    with pytest.raises(MissingRoleError) as role:
        await call(setup.gateway, "GET", "/admin/x", headers=bearer(reader))
    assert (role.value.status, role.value.code) == (403, "missing_role")
    assert role.value.to_problem()["role"] == "admin"
    admin = sign_jwt(ext_claims(setup.idp, roles=["admin"]), setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/admin/x", headers=bearer(admin))).status == 200
    with pytest.raises(ClaimMismatchError) as claim:
        await call(setup.gateway, "GET", "/tenant/x", headers=bearer(reader))
    assert claim.value.to_problem()["claim"] == "tenant"
    acme = sign_jwt(ext_claims(setup.idp, tenant="acme"), setup.idp.key, typ="at+jwt")
    assert (await call(setup.gateway, "GET", "/tenant/x", headers=bearer(acme))).status == 200


async def test_configured_jwks_uri_skips_discovery(setup: Setup) -> None:
    cache = JwksCache(setup.idp.url, jwks_uri=setup.idp.url + "/keys", algorithms=("ES256",))
    keys = await cache.get()
    assert keys.kids() == (setup.idp.key.kid,)
    assert setup.idp.hits["discovery"] == 0
