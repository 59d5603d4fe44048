"""Client authentication (RFC 6749 §2.3, RFC 7523): one method, the registered one, no replay."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.crypto.jwt import sign_jwt
from bastion.crypto.keys import SigningKeyPair
from bastion.protocol.rfc6749.client_auth import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    AuthenticatedClient,
    authenticate_client,
)
from bastion.protocol.rfc6749.errors import InvalidClientError, InvalidRequestError, OAuthError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client
from bastion.storage.shared import MemorySharedState
from protocol.protocol_support import (
    ISSUER,
    TOKEN_ENDPOINT,
    MemoryClients,
    basic,
    confidential,
    form_request,
    raw_basic,
)

SECRET = "bcs_" + "s" * 43
NOW = 1_700_000_000.0
KEY = SigningKeyPair.generate("ES256")
OTHER_KEY = SigningKeyPair.generate("ES256")


@pytest.fixture
async def shared() -> AsyncIterator[MemorySharedState]:
    async with MemorySharedState() as state:
        yield state


@pytest.fixture
def clients() -> MemoryClients:
    registry = MemoryClients()
    registry.add(confidential("basic-svc"), SECRET)
    registry.add(confidential("post-svc", token_endpoint_auth_method="client_secret_post"), SECRET)
    registry.add(
        confidential(
            "jwt-svc",
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [KEY.public_jwk()]},
        )
    )
    registry.add(Client(client_id="spa", client_type="public", token_endpoint_auth_method="none"))
    registry.add(confidential("odd id:+é"), "se:cr+et é")
    return registry


async def _auth(
    request: OAuthRequest,
    clients: MemoryClients,
    shared: MemorySharedState,
    **kwargs: Any,
) -> AuthenticatedClient:
    return await authenticate_client(
        request,
        clients=clients,
        issuer=ISSUER,
        token_endpoint=TOKEN_ENDPOINT,
        shared=shared,
        now=kwargs.pop("now", NOW),
        **kwargs,
    )


async def _client_error(
    request: OAuthRequest, clients: MemoryClients, shared: MemorySharedState, **kwargs: Any
) -> InvalidClientError:
    with pytest.raises(InvalidClientError) as caught:
        await _auth(request, clients, shared, **kwargs)
    return caught.value


async def _request_error(
    request: OAuthRequest, clients: MemoryClients, shared: MemorySharedState
) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        await _auth(request, clients, shared)
    return caught.value


# -- client_secret_basic ----------------------------------------------------------


async def test_basic(clients: MemoryClients, shared: MemorySharedState) -> None:
    request = form_request(
        {"grant_type": "client_credentials"}, headers=[basic("basic-svc", SECRET)]
    )
    result = await _auth(request, clients, shared)
    assert result.client.client_id == "basic-svc"
    assert result.method == "client_secret_basic"


async def test_basic_decodes_form_urlencoded_halves(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    request = form_request({}, headers=[basic("odd id:+é", "se:cr+et é")])
    assert (await _auth(request, clients, shared)).client.client_id == "odd id:+é"
    # percent-encoding, '+' for space, per RFC 6749 §2.3.1
    request = form_request({}, headers=[raw_basic(b"odd+id%3A%2B%C3%A9:se%3Acr%2Bet+%C3%A9")])
    assert (await _auth(request, clients, shared)).client.client_id == "odd id:+é"


async def test_basic_scheme_is_case_insensitive(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    name, value = basic("basic-svc", SECRET)
    request = form_request({}, headers=[(name, value.replace("Basic", "bAsIc"))])
    assert (await _auth(request, clients, shared)).client.client_id == "basic-svc"


@pytest.mark.parametrize(
    ("header", "description", "reason"),
    [
        ("Basic !!!notbase64", "not base64", "basic_bad_base64"),
        (
            "Basic " + base64.b64encode(b"no-colon").decode(),
            "no ':' between client id and secret",
            "basic_missing_colon",
        ),
        ("Basic " + base64.b64encode(b"\xff\xfe:x").decode(), "not UTF-8", "basic_not_utf8"),
        (
            "Basic " + base64.b64encode(b"a%ff:x").decode(),
            "percent-encoding is not UTF-8",
            "basic_bad_percent_encoding",
        ),
        (
            "Basic " + base64.b64encode(b":secret").decode(),
            "empty client id or secret",
            "basic_empty",
        ),
        ("Basic", "no ':' between client id and secret", "basic_missing_colon"),
    ],
)
async def test_malformed_basic(
    clients: MemoryClients, shared: MemorySharedState, header: str, description: str, reason: str
) -> None:
    request = form_request({}, headers=[("Authorization", header)])
    exc = await _client_error(request, clients, shared)
    assert exc.error_description == f"the Basic credentials are malformed: {description}"
    assert exc.reason == reason
    assert exc.status == 401
    assert exc.headers()["WWW-Authenticate"] == 'Basic realm="bastion"'


@pytest.mark.parametrize(
    ("client_id", "secret", "reason"),
    [("basic-svc", "wrong", "bad_secret"), ("nobody", SECRET, "unknown_client")],
)
async def test_basic_failures_collapse(
    clients: MemoryClients, shared: MemorySharedState, client_id: str, secret: str, reason: str
) -> None:
    exc = await _client_error(form_request({}, headers=[basic(client_id, secret)]), clients, shared)
    assert exc.error_description == "client authentication failed"
    assert exc.reason == reason
    _, headers, body = exc.to_token_response()
    assert headers["WWW-Authenticate"] == 'Basic realm="bastion"'
    assert orjson.loads(body) == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }


async def test_disabled_client_refused(clients: MemoryClients, shared: MemorySharedState) -> None:
    clients.disable("basic-svc")
    exc = await _client_error(
        form_request({}, headers=[basic("basic-svc", SECRET)]), clients, shared
    )
    assert exc.reason == "client_disabled"
    assert exc.error_description == "client authentication failed"


async def test_basic_for_a_post_client_is_the_wrong_method(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    exc = await _client_error(
        form_request({}, headers=[basic("post-svc", SECRET)]), clients, shared
    )
    assert exc.reason == "auth_method_mismatch"
    assert exc.error_description == "client authentication failed"


async def test_basic_with_contradicting_client_id(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    request = form_request({"client_id": "post-svc"}, headers=[basic("basic-svc", SECRET)])
    exc = await _request_error(request, clients, shared)
    assert exc.error_description == "client_id does not match the Basic credentials"
    request = form_request({"client_id": "basic-svc"}, headers=[basic("basic-svc", SECRET)])
    assert (await _auth(request, clients, shared)).method == "client_secret_basic"


async def test_other_authorization_scheme(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    request = form_request({}, headers=[("Authorization", "Bearer abc")])
    exc = await _request_error(request, clients, shared)
    assert (
        exc.error_description
        == "the Authorization header at this endpoint must use the Basic scheme"
    )


async def test_two_authorization_headers(clients: MemoryClients, shared: MemorySharedState) -> None:
    header = basic("basic-svc", SECRET)
    exc = await _request_error(form_request({}, headers=[header, header]), clients, shared)
    assert exc.error_description == "header 'authorization' repeated"


# -- client_secret_post, none, method rules ---------------------------------------------


async def test_post(clients: MemoryClients, shared: MemorySharedState) -> None:
    request = form_request({"client_id": "post-svc", "client_secret": SECRET})
    result = await _auth(request, clients, shared)
    assert (result.client.client_id, result.method) == ("post-svc", "client_secret_post")


async def test_post_failures(clients: MemoryClients, shared: MemorySharedState) -> None:
    exc = await _client_error(
        form_request({"client_id": "post-svc", "client_secret": "nope"}), clients, shared
    )
    assert (exc.reason, exc.error_description) == ("bad_secret", "client authentication failed")
    assert "WWW-Authenticate" not in exc.headers()
    exc = await _client_error(form_request({"client_secret": SECRET}), clients, shared)
    assert exc.reason == "missing_client_id"
    exc = await _client_error(
        form_request({"client_id": "basic-svc", "client_secret": SECRET}), clients, shared
    )
    assert exc.reason == "auth_method_mismatch"


async def test_two_methods_is_invalid_request(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    request = form_request(
        {"client_id": "basic-svc", "client_secret": SECRET}, headers=[basic("basic-svc", SECRET)]
    )
    exc = await _request_error(request, clients, shared)
    assert exc.code == "invalid_request"
    assert exc.error_description == (
        "more than one client authentication method used: client_secret_basic, client_secret_post"
    )
    request = form_request(
        {
            "client_id": "post-svc",
            "client_secret": SECRET,
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": "a.b.c",
        }
    )
    exc = await _request_error(request, clients, shared)
    assert exc.error_description == (
        "more than one client authentication method used: client_secret_post, private_key_jwt"
    )


async def test_no_credentials(clients: MemoryClients, shared: MemorySharedState) -> None:
    exc = await _client_error(form_request({"grant_type": "client_credentials"}), clients, shared)
    assert (exc.reason, exc.status) == ("no_credentials", 401)


async def test_credentials_in_query_refused(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    request = form_request({"client_id": "post-svc"}, query="client_secret=" + SECRET)
    exc = await _request_error(request, clients, shared)
    assert exc.error_description == "client credentials must not be sent in the URL query"


async def test_none_for_public_clients_only(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    result = await _auth(form_request({"client_id": "spa"}), clients, shared)
    assert (result.client.client_id, result.method) == ("spa", "none")
    exc = await _client_error(form_request({"client_id": "basic-svc"}), clients, shared)
    assert exc.reason == "auth_method_mismatch"
    exc = await _client_error(form_request({"client_id": "ghost"}), clients, shared)
    assert exc.reason == "unknown_client"
    # a confidential client registered with "none" is still refused
    clients.add(confidential("confused", token_endpoint_auth_method="none"))
    exc = await _client_error(form_request({"client_id": "confused"}), clients, shared)
    assert exc.reason == "client_type_mismatch"


async def test_method_not_allowed_at_this_endpoint(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    allowed = ("client_secret_basic", "client_secret_post", "private_key_jwt")
    exc = await _client_error(
        form_request({"client_id": "spa"}), clients, shared, allowed_methods=allowed
    )
    assert exc.reason == "method_not_allowed"
    assert exc.error_description == "client authentication failed"


# -- private_key_jwt -----------------------------------------------------------------


def _assertion_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "jwt-svc",
        "sub": "jwt-svc",
        "aud": TOKEN_ENDPOINT,
        "exp": int(NOW) + 60,
        "iat": int(NOW),
        "jti": "jti-1",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def _jwt_request(assertion: str, **extra: str) -> OAuthRequest:
    request: OAuthRequest = form_request(
        {
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": assertion,
            **extra,
        }
    )
    return request


async def test_private_key_jwt(clients: MemoryClients, shared: MemorySharedState) -> None:
    result = await _auth(_jwt_request(sign_jwt(_assertion_claims(), KEY)), clients, shared)
    assert (result.client.client_id, result.method) == ("jwt-svc", "private_key_jwt")
    assert await shared.ttl("pkjwt-jti:jwt-svc:jti-1") is not None


@pytest.mark.parametrize("aud", [ISSUER, [ISSUER], ["https://other", TOKEN_ENDPOINT]])
async def test_private_key_jwt_audiences(
    clients: MemoryClients, shared: MemorySharedState, aud: Any
) -> None:
    assertion = sign_jwt(_assertion_claims(aud=aud), KEY)
    assert (await _auth(_jwt_request(assertion), clients, shared)).method == "private_key_jwt"


async def test_private_key_jwt_with_matching_client_id(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    assertion = sign_jwt(_assertion_claims(), KEY)
    request = _jwt_request(assertion, client_id="jwt-svc")
    assert (await _auth(request, clients, shared)).client.client_id == "jwt-svc"


async def test_replayed_jti_is_refused(clients: MemoryClients, shared: MemorySharedState) -> None:
    assertion = sign_jwt(_assertion_claims(), KEY)
    await _auth(_jwt_request(assertion), clients, shared)
    exc = await _client_error(_jwt_request(assertion), clients, shared)
    assert exc.reason == "assertion_replayed"
    assert exc.error_description == "client authentication failed"
    # a new jti is fine
    fresh = sign_jwt(_assertion_claims(jti="jti-2"), KEY)
    await _auth(_jwt_request(fresh), clients, shared)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (_assertion_claims(aud="https://elsewhere.example.com"), "assertion_wrong_audience"),
        (_assertion_claims(aud=[ISSUER + "/"]), "assertion_wrong_audience"),
        (_assertion_claims(exp=int(NOW) + 3600 + 60), "assertion_exp_too_far"),
        (_assertion_claims(exp=int(NOW) - 120), "assertion_expired"),
        (_assertion_claims(iss="someone-else"), "assertion_wrong_subject"),
        (_assertion_claims(jti=None), "assertion_missing_claim"),
        (_assertion_claims(exp=None), "assertion_missing_claim"),
        (_assertion_claims(aud=None), "assertion_missing_claim"),
        (_assertion_claims(jti="j" * 300), "assertion_bad_jti"),
        (_assertion_claims(iat=int(NOW) + 3600), "assertion_issued_in_future"),
    ],
)
async def test_bad_assertions(
    clients: MemoryClients, shared: MemorySharedState, claims: dict[str, Any], reason: str
) -> None:
    exc = await _client_error(_jwt_request(sign_jwt(claims, KEY)), clients, shared)
    assert exc.reason == reason
    assert exc.error_description == "client authentication failed"
    assert exc.status == 401


async def test_bad_assertion_does_not_burn_the_jti(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    forged = sign_jwt(_assertion_claims(), OTHER_KEY)
    await _client_error(_jwt_request(forged), clients, shared)
    await _auth(_jwt_request(sign_jwt(_assertion_claims(), KEY)), clients, shared)


@pytest.mark.parametrize(
    "typ", ["at+jwt", "dpop+jwt", "logout+jwt", "application/at+jwt", "secevent+jwt", "JOSE"]
)
async def test_assertion_of_another_type_is_refused(
    clients: MemoryClients, shared: MemorySharedState, typ: str
) -> None:
    exc = await _client_error(
        _jwt_request(sign_jwt(_assertion_claims(), KEY, typ=typ)), clients, shared
    )
    assert exc.reason == "assertion_wrong_typ"
    assert exc.error_description == "client authentication failed"
    assert exc.status == 401


@pytest.mark.parametrize(
    "typ",
    [
        "JWT",
        "jwt",
        "application/jwt",
        "client-authentication+jwt",
        "application/client-authentication+jwt",
    ],
)
async def test_assertion_types_accepted(
    clients: MemoryClients, shared: MemorySharedState, typ: str
) -> None:
    assertion = sign_jwt(_assertion_claims(), KEY, typ=typ)
    assert (await _auth(_jwt_request(assertion), clients, shared)).method == "private_key_jwt"


async def test_assertion_with_a_high_s_signature_is_accepted(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    # Client libraries do not normalise S; the jti replay cache makes the twin useless.
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    head, body, sig = sign_jwt(_assertion_claims(), KEY).split(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    high = raw[:32] + (n - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    assertion = f"{head}.{body}.{_b64(high)}"
    assert (await _auth(_jwt_request(assertion), clients, shared)).method == "private_key_jwt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_refused(
    clients: MemoryClients, shared: MemorySharedState, alg: str
) -> None:
    header = _b64(orjson.dumps({"alg": alg, "kid": KEY.kid, "typ": "JWT"}))
    payload = _b64(orjson.dumps(_assertion_claims()))
    exc = await _client_error(_jwt_request(f"{header}.{payload}."), clients, shared)
    assert exc.reason.startswith("assertion_")
    assert exc.error_description == "client authentication failed"


async def test_signed_by_another_key(clients: MemoryClients, shared: MemorySharedState) -> None:
    exc = await _client_error(
        _jwt_request(sign_jwt(_assertion_claims(), OTHER_KEY)), clients, shared
    )
    assert exc.reason == "assertion_unknown_kid"
    # same kid, different key: the signature does not verify
    header = _b64(orjson.dumps({"alg": "ES256", "kid": KEY.kid, "typ": "JWT"}))
    payload = _b64(orjson.dumps(_assertion_claims()))
    signature = OTHER_KEY.sign(f"{header}.{payload}".encode())
    exc = await _client_error(
        _jwt_request(f"{header}.{payload}.{_b64(signature)}"), clients, shared
    )
    assert exc.reason == "assertion_bad_signature"


async def test_assertion_for_unknown_or_other_clients(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    claims = _assertion_claims(iss="ghost", sub="ghost")
    exc = await _client_error(_jwt_request(sign_jwt(claims, KEY)), clients, shared)
    assert exc.reason == "unknown_client"
    claims = _assertion_claims(iss="basic-svc", sub="basic-svc")
    exc = await _client_error(_jwt_request(sign_jwt(claims, KEY)), clients, shared)
    assert exc.reason == "auth_method_mismatch"
    # client_id parameter naming another client than the assertion
    request = _jwt_request(sign_jwt(_assertion_claims(), KEY), client_id="basic-svc")
    exc = await _client_error(request, clients, shared)
    assert exc.reason == "auth_method_mismatch"


async def test_malformed_assertions(clients: MemoryClients, shared: MemorySharedState) -> None:
    for assertion, reason in [
        ("not-a-jwt", "assertion_malformed"),
        ("a.%%%.c", "assertion_malformed"),
        (f"a.{_b64(b'[1]')}.c", "assertion_missing_sub"),
        ("x" * 9000, "assertion_too_large"),
    ]:
        exc = await _client_error(_jwt_request(assertion), clients, shared)
        assert exc.reason == reason


async def test_assertion_type_rules(clients: MemoryClients, shared: MemorySharedState) -> None:
    exc = await _request_error(
        form_request({"client_assertion": sign_jwt(_assertion_claims(), KEY)}), clients, shared
    )
    assert exc.error_description == (
        "private_key_jwt needs both client_assertion and client_assertion_type"
    )
    request = form_request(
        {
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
            "client_assertion": sign_jwt(_assertion_claims(), KEY),
        }
    )
    failure = await _client_error(request, clients, shared)
    assert failure.reason == "assertion_type_unsupported"
    assert failure.error_description == (
        "unsupported client_assertion_type; use "
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )


async def test_client_without_usable_jwks(
    clients: MemoryClients, shared: MemorySharedState
) -> None:
    clients.add(confidential("jwt-svc", token_endpoint_auth_method="private_key_jwt"))
    exc = await _client_error(_jwt_request(sign_jwt(_assertion_claims(), KEY)), clients, shared)
    assert exc.reason == "client_jwks_missing"
    clients.add(
        confidential(
            "jwt-svc",
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]},
        )
    )
    exc = await _client_error(_jwt_request(sign_jwt(_assertion_claims(), KEY)), clients, shared)
    assert exc.reason == "client_jwks_invalid"


async def test_real_clock_default(clients: MemoryClients, shared: MemorySharedState) -> None:
    now = time.time()
    claims = _assertion_claims(exp=int(now) + 60, iat=int(now), jti="clock")
    result = await authenticate_client(
        _jwt_request(sign_jwt(claims, KEY)),
        clients=clients,
        issuer=ISSUER,
        token_endpoint=TOKEN_ENDPOINT,
        shared=shared,
    )
    assert result.method == "private_key_jwt"


async def test_replay_is_refused_across_nodes_with_redis(
    clients: MemoryClients, redis_url: str, redis_prefix: str
) -> None:
    from bastion.storage.shared import open_shared_state

    assertion = sign_jwt(_assertion_claims(jti="redis-jti"), KEY)
    node_a = await open_shared_state(redis_url, key_prefix=redis_prefix)
    node_b = await open_shared_state(redis_url, key_prefix=redis_prefix)
    try:
        await _auth(_jwt_request(assertion), clients, node_a)  # type: ignore[arg-type]
        exc = await _client_error(_jwt_request(assertion), clients, node_b)  # type: ignore[arg-type]
        assert exc.reason == "assertion_replayed"
        ttl = await node_a.ttl("pkjwt-jti:jwt-svc:redis-jti")
        assert ttl is not None
        assert 60 < ttl <= 91
    finally:
        await node_a.close()
        await node_b.close()


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(max_size=80), assertion=st.text(max_size=80))
async def test_arbitrary_credentials_only_raise_oauth_errors(
    clients: MemoryClients, shared: MemorySharedState, header: str, assertion: str
) -> None:
    for request in (
        form_request({}, headers=[("Authorization", "Basic " + header)]),
        form_request({}, headers=[raw_basic(header.encode("utf-8", "surrogatepass"))]),
        _jwt_request(assertion) if assertion else form_request({"client_id": "spa"}),
    ):
        try:
            await _auth(request, clients, shared)
        except OAuthError as exc:
            assert exc.code in {"invalid_client", "invalid_request"}
