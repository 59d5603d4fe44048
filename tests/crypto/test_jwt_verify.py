"""JWT signing and verification: round trips, interoperability, claim checks."""

from __future__ import annotations

import base64
import json
from typing import Any, get_args

import pytest
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from jwcrypto import jwt as jwcrypto_jwt

from bastion.crypto import (
    InvalidTokenError,
    JWTVerifier,
    PublicKeySet,
    SigningAlgorithm,
    SigningKeyPair,
    VerifiedJWT,
    sign_jwt,
)

ALGS: tuple[SigningAlgorithm, ...] = get_args(SigningAlgorithm)
ISSUER = "https://auth.example.com"
AUDIENCE = "https://api.example.com"
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def pairs() -> dict[str, SigningKeyPair]:
    return {alg: SigningKeyPair.generate(alg, rsa_key_size=2048) for alg in ALGS}


@pytest.fixture(scope="module")
def key_set(pairs: dict[str, SigningKeyPair]) -> PublicKeySet:
    return PublicKeySet.from_jwks({"keys": [pair.public_jwk() for pair in pairs.values()]})


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": AUDIENCE,
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 900,
        "jti": "j-1",
        "client_id": "client-1",
        "scope": "orders:read",
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def verifier(keys: Any, **options: Any) -> JWTVerifier:
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "typ": "at+jwt"}
    settings.update(options)
    return JWTVerifier(keys, **settings)


def reason(check: JWTVerifier, token: str, now: float = NOW) -> str:
    with pytest.raises(InvalidTokenError) as info:
        check.verify(token, now=now)
    assert info.value.code == "invalid_token"
    assert info.value.status == 401
    return info.value.reason


@pytest.mark.parametrize("alg", ALGS)
def test_round_trip(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet, alg: str) -> None:
    pair = pairs[alg]
    token = sign_jwt(claims(), pair, typ="at+jwt")
    result = verifier(key_set).verify(token, now=NOW)
    assert isinstance(result, VerifiedJWT)
    assert result.kid == pair.kid
    assert dict(result.header) == {"alg": alg, "kid": pair.kid, "typ": "at+jwt"}
    assert dict(result.claims) == claims()
    # bytes are accepted as well as text
    assert verifier(key_set).verify(token.encode(), now=NOW).claims == claims()
    # results are cached and shared later: they are read-only
    with pytest.raises(TypeError):
        result.claims["scope"] = "admin"  # type: ignore[index]
    with pytest.raises(TypeError):
        result.header["kid"] = "other"  # type: ignore[index]


@pytest.mark.parametrize("alg", ALGS)
def test_header_is_exactly_alg_kid_typ(pairs: dict[str, SigningKeyPair], alg: str) -> None:
    token = sign_jwt({"a": 1}, pairs[alg])
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": alg, "kid": pairs[alg].kid, "typ": "JWT"}
    assert "=" not in token


def test_es256_signature_is_raw_r_s(pairs: dict[str, SigningKeyPair]) -> None:
    token = sign_jwt({"a": 1}, pairs["ES256"])
    assert len(base64.urlsafe_b64decode(token.split(".")[2] + "==")) == 64


@pytest.mark.parametrize("alg", ALGS)
def test_second_library_verifies_with_public_jwk_only(
    pairs: dict[str, SigningKeyPair], alg: str
) -> None:
    pair = pairs[alg]
    public = jwcrypto_jwk.JWK(**pair.public_jwk())
    assert not public.has_private
    token = sign_jwt(claims(), pair, typ="at+jwt")
    # jwcrypto checks exp/nbf against the real clock; use a token valid now.
    checked = jwcrypto_jwt.JWT(jwt=token, key=public, algs=[alg], check_claims=False)
    assert json.loads(checked.claims) == claims()
    assert json.loads(checked.header)["kid"] == pair.kid


@pytest.mark.parametrize("alg", ALGS)
def test_verifies_tokens_of_a_second_library(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet, alg: str
) -> None:
    pair = pairs[alg]
    private = jwcrypto_jwk.JWK.from_pem(pair.private_bytes())
    signer = jwcrypto_jws.JWS(json.dumps(claims()).encode())
    signer.add_signature(
        private, alg=alg, protected=json.dumps({"alg": alg, "kid": pair.kid, "typ": "at+jwt"})
    )
    token = signer.serialize(compact=True)
    # Another library's ES256 signature has a high S half the time: what external
    # issuers and client assertions are verified with allows it (bastion's own is low S).
    lenient = verifier(key_set, allow_high_s=True)
    assert lenient.verify(token, now=NOW).claims == claims()


def test_callable_key_source_sees_rotation(pairs: dict[str, SigningKeyPair]) -> None:
    current = {"set": PublicKeySet([pairs["ES256"].public_key])}
    check = verifier(lambda: current["set"])
    old = sign_jwt(claims(), pairs["ES256"], typ="at+jwt")
    new = sign_jwt(claims(), pairs["EdDSA"], typ="at+jwt")
    check.verify(old, now=NOW)
    assert reason(check, new) == "unknown_kid"
    current["set"] = PublicKeySet([pairs["ES256"].public_key, pairs["EdDSA"].public_key])
    check.verify(new, now=NOW)
    current["set"] = PublicKeySet([pairs["EdDSA"].public_key])
    assert reason(check, old) == "unknown_kid"


# -- time claims -----------------------------------------------------------------


def test_exp_boundary_with_leeway(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet) -> None:
    token = sign_jwt(claims(exp=int(NOW)), pairs["ES256"], typ="at+jwt")
    check = verifier(key_set, leeway=30)
    check.verify(token, now=NOW + 29.9)
    assert reason(check, token, NOW + 30) == "expired"  # not accepted ON exp (+leeway)
    strict = verifier(key_set, leeway=0)
    strict.verify(token, now=NOW - 0.001)
    assert reason(strict, token, NOW) == "expired"


def test_nbf_with_leeway(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet) -> None:
    token = sign_jwt(claims(nbf=int(NOW) + 60), pairs["ES256"], typ="at+jwt")
    check = verifier(key_set, leeway=30)
    assert reason(check, token, NOW + 29) == "not_yet_valid"
    check.verify(token, now=NOW + 30)


def test_iat_in_future_beyond_leeway(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet
) -> None:
    check = verifier(key_set, leeway=30)
    check.verify(sign_jwt(claims(iat=int(NOW) + 30), pairs["ES256"], typ="at+jwt"), now=NOW)
    late = sign_jwt(claims(iat=int(NOW) + 31), pairs["ES256"], typ="at+jwt")
    assert reason(check, late) == "issued_in_future"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"1800000000"', "invalid_claim"),
        ("true", "invalid_claim"),
        ("null", "invalid_claim"),  # "exp": null must not read as "no exp"
        ("[1]", "invalid_claim"),
        ('{"a": 1}', "invalid_claim"),
        ("1e400", "malformed"),  # overflows a double: refused by the JSON parser
        ("NaN", "malformed"),
    ],
)
@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_numeric_dates_must_be_numbers(
    pairs: dict[str, SigningKeyPair],
    key_set: PublicKeySet,
    name: str,
    value: str,
    expected: str,
) -> None:
    body = json.dumps({**claims(), name: "__V__"}).replace('"__V__"', value).encode()
    token = _sign_raw(
        pairs["ES256"], {"alg": "ES256", "kid": pairs["ES256"].kid, "typ": "at+jwt"}, body
    )
    assert reason(verifier(key_set), token) == expected


def test_float_numeric_dates_accepted(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet
) -> None:
    token = sign_jwt(claims(exp=NOW + 0.5, iat=NOW - 0.5), pairs["ES256"], typ="at+jwt")
    verifier(key_set, leeway=0).verify(token, now=NOW)


@pytest.mark.parametrize("missing", ["exp", "iat"])
def test_required_claims(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet, missing: str
) -> None:
    token = sign_jwt(claims(**{missing: None}), pairs["ES256"], typ="at+jwt")
    with pytest.raises(InvalidTokenError) as info:
        verifier(key_set).verify(token, now=NOW)
    assert (info.value.reason, str(info.value)) == (
        "missing_claim",
        f"claim {missing!r} is required",
    )
    # a verifier may require other claims
    check = verifier(key_set, required_claims=("exp", "jti", "client_id"))
    check.verify(sign_jwt(claims(iat=None), pairs["ES256"], typ="at+jwt"), now=NOW)
    assert reason(check, sign_jwt(claims(jti=None), pairs["ES256"], typ="at+jwt")) == (
        "missing_claim"
    )


def test_max_lifetime(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet) -> None:
    check = verifier(key_set, max_lifetime=300, leeway=0, required_claims=("exp",))
    ok = sign_jwt(claims(iat=int(NOW), exp=int(NOW) + 300), pairs["ES256"], typ="at+jwt")
    check.verify(ok, now=NOW)
    long_by_iat = sign_jwt(
        claims(iat=int(NOW) - 200, exp=int(NOW) + 200), pairs["ES256"], typ="at+jwt"
    )
    assert reason(check, long_by_iat) == "lifetime_too_long"
    long_without_iat = sign_jwt(claims(iat=None, exp=int(NOW) + 301), pairs["ES256"], typ="at+jwt")
    assert reason(check, long_without_iat) == "lifetime_too_long"


# -- iss / aud / typ ---------------------------------------------------------------


def test_issuer(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet) -> None:
    pair = pairs["ES256"]
    assert reason(verifier(key_set), sign_jwt(claims(iss="https://evil"), pair, typ="at+jwt")) == (
        "wrong_issuer"
    )
    assert reason(verifier(key_set), sign_jwt(claims(iss=[ISSUER]), pair, typ="at+jwt")) == (
        "wrong_issuer"
    )
    assert reason(verifier(key_set), sign_jwt(claims(iss=None), pair, typ="at+jwt")) == (
        "missing_claim"
    )
    several = verifier(key_set, issuer=["https://other", ISSUER])
    several.verify(sign_jwt(claims(), pair, typ="at+jwt"), now=NOW)
    unchecked = verifier(key_set, issuer=None)
    unchecked.verify(sign_jwt(claims(iss=None), pair, typ="at+jwt"), now=NOW)


@pytest.mark.parametrize(
    ("aud", "expected"),
    [
        (AUDIENCE, None),
        ([AUDIENCE], None),
        (["https://other", AUDIENCE], None),
        ("https://other", "wrong_audience"),
        (["https://other", "https://third"], "wrong_audience"),
        ([], "wrong_audience"),
        (AUDIENCE.upper(), "wrong_audience"),
        (None, "missing_claim"),
        (5, "invalid_claim"),
        ([AUDIENCE, 5], "invalid_claim"),
        ({"aud": AUDIENCE}, "invalid_claim"),
    ],
)
def test_audience(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet, aud: Any, expected: str | None
) -> None:
    token = sign_jwt(claims(aud=aud), pairs["ES256"], typ="at+jwt")
    if expected is None:
        verifier(key_set).verify(token, now=NOW)
    else:
        assert reason(verifier(key_set), token) == expected


def test_audience_none_means_unchecked(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet
) -> None:
    token = sign_jwt(claims(aud="https://anything"), pairs["ES256"], typ="at+jwt")
    verifier(key_set, audience=None).verify(token, now=NOW)
    verifier(key_set, audience=["https://x", "https://anything"]).verify(token, now=NOW)


@pytest.mark.parametrize(
    "typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "APPLICATION/AT+JWT"]
)
def test_typ_variants_accepted(
    pairs: dict[str, SigningKeyPair], key_set: PublicKeySet, typ: str
) -> None:
    verifier(key_set).verify(sign_jwt(claims(), pairs["ES256"], typ=typ), now=NOW)
    verifier(key_set, typ="application/at+jwt").verify(
        sign_jwt(claims(), pairs["ES256"], typ=typ), now=NOW
    )


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt ", "application/jwt", "x/at+jwt", "at"])
def test_wrong_typ(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet, typ: str) -> None:
    assert reason(verifier(key_set), sign_jwt(claims(), pairs["ES256"], typ=typ)) == "wrong_typ"


def test_missing_or_non_string_typ(pairs: dict[str, SigningKeyPair], key_set: PublicKeySet) -> None:
    pair = pairs["ES256"]
    body = json.dumps(claims()).encode()
    no_typ = _sign_raw(pair, {"alg": "ES256", "kid": pair.kid}, body)
    assert reason(verifier(key_set), no_typ) == "wrong_typ"
    verifier(key_set, typ=None).verify(no_typ, now=NOW)
    numeric = _sign_raw(pair, {"alg": "ES256", "kid": pair.kid, "typ": 1}, body)
    assert reason(verifier(key_set), numeric) == "wrong_typ"


@pytest.mark.parametrize(
    "options",
    [
        {"leeway": -1},
        {"leeway": float("nan")},
        {"max_size": 0},
        {"max_lifetime": 0},
        {"issuer": ""},
        {"issuer": []},
        {"audience": [""]},
        {"typ": ""},
    ],
)
def test_bad_verifier_options(key_set: PublicKeySet, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        verifier(key_set, **options)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign_raw(pair: SigningKeyPair, header: dict[str, Any], body: bytes) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(body)}"
    return f"{signing_input}.{_b64(pair.sign(signing_input.encode()))}"


def test_missing_kid_allowed_only_when_opted_in_and_one_key() -> None:
    """Client assertions may omit kid (RFC 7515) when the client registered one key."""
    import base64 as _b64
    import json as _json

    from bastion.crypto import InvalidTokenError as _Invalid
    from bastion.crypto import JWTVerifier as _Verifier
    from bastion.crypto import PublicKeySet as _Set
    from bastion.crypto import SigningKeyPair as _Pair

    pair = _Pair.generate("ES256")
    other = _Pair.generate("ES256")

    def b64(data: bytes) -> bytes:
        return _b64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(_json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    payload = b64(_json.dumps({"exp": 4102444800, "iat": 1700000000}).encode())
    signing_input = header + b"." + payload
    token = (signing_input + b"." + b64(pair.sign(signing_input))).decode()

    one = _Set([pair.public_key])
    two = _Set([pair.public_key, other.public_key])
    strict = _Verifier(one, issuer=None, audience=None, typ=None)
    with pytest.raises(_Invalid) as caught:
        strict.verify(token)
    assert caught.value.reason == "unknown_kid"
    relaxed = _Verifier(one, issuer=None, audience=None, typ=None, require_kid=False)
    assert relaxed.verify(token).kid == pair.kid
    ambiguous = _Verifier(two, issuer=None, audience=None, typ=None, require_kid=False)
    with pytest.raises(_Invalid) as caught:
        ambiguous.verify(token)
    assert caught.value.reason == "unknown_kid"
    wrong = _Verifier(
        _Set([other.public_key]), issuer=None, audience=None, typ=None, require_kid=False
    )
    with pytest.raises(_Invalid) as caught:
        wrong.verify(token)
    assert caught.value.reason == "bad_signature"
