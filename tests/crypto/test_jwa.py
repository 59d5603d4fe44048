"""The JWS algorithms on joserfc: one algorithm per key, all the way down into joserfc."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any, get_args

import pytest
from joserfc import jws
from joserfc.errors import UnsupportedAlgorithmError, UnsupportedKeyAlgorithmError

from bastion.crypto import (
    InvalidTokenError,
    JWTVerifier,
    PublicKeySet,
    SigningAlgorithm,
    SigningKeyPair,
    sign_jwt,
)
from bastion.crypto.jwa import ALGORITHMS, pinned_registry

NOW = 1_800_000_000


def claims() -> dict[str, Any]:
    return {"sub": "s", "iat": NOW - 10, "exp": NOW + 600}


@pytest.fixture(scope="module")
def pairs() -> dict[str, SigningKeyPair]:
    algs: tuple[SigningAlgorithm, ...] = get_args(SigningAlgorithm)
    return {alg: SigningKeyPair.generate(alg, rsa_key_size=2048) for alg in algs}


def test_the_four_algorithms() -> None:
    assert sorted(ALGORITHMS) == ["ES256", "EdDSA", "PS256", "RS256"]
    assert {name: algorithm.name for name, algorithm in ALGORITHMS.items()} == {
        name: name for name in ALGORITHMS
    }


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_a_pinned_registry_knows_one_algorithm(alg: str) -> None:
    registry = pinned_registry(alg)
    assert registry.get_alg(alg) is ALGORITHMS[alg]
    for other in [*ALGORITHMS, "none", "HS256", "Ed25519", alg.lower()]:
        if other != alg:
            with pytest.raises(UnsupportedAlgorithmError):
                registry.get_alg(other)


def test_unknown_algorithm_has_no_registry() -> None:
    with pytest.raises(KeyError):
        pinned_registry("HS256")


def test_joserfc_itself_refuses_a_key_under_another_algorithm(
    pairs: dict[str, SigningKeyPair],
) -> None:
    # Defence in depth: even called directly, joserfc will not verify an RS256 key as PS256.
    rs = pairs["RS256"]
    token = sign_jwt(claims(), rs)
    _, body, signature = token.split(".")
    header = base64.urlsafe_b64encode(json.dumps({"alg": "PS256", "kid": rs.kid}).encode()).rstrip(
        b"="
    )
    forged = f"{header.decode()}.{body}.{signature}"
    with pytest.raises(UnsupportedKeyAlgorithmError):
        jws.deserialize_compact(forged, rs.public_key.jose, algorithms=["PS256"])
    assert jws.deserialize_compact(token, rs.public_key.jose, algorithms=["RS256"]).payload


def test_a_pinned_registry_refuses_to_sign_with_another_algorithm(
    pairs: dict[str, SigningKeyPair],
) -> None:
    es = pairs["ES256"]
    header = {"alg": "HS256", "kid": es.kid}
    with pytest.raises(UnsupportedAlgorithmError):
        jws.serialize_compact(header, b"{}", es._jose, registry=pinned_registry("ES256"))


def test_sign_compact_header_is_alg_kid_typ(pairs: dict[str, SigningKeyPair]) -> None:
    pair = pairs["EdDSA"]
    token = pair.sign_compact(b'{"a":1}', typ="dpop+jwt")
    head = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert head == {"alg": "EdDSA", "kid": pair.kid, "typ": "dpop+jwt"}
    verifier = JWTVerifier(
        PublicKeySet([pair.public_key]), issuer=None, audience=None, typ=None, required_claims=()
    )
    assert dict(verifier.verify(token, now=NOW).claims) == {"a": 1}


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_no_warning_per_token(pairs: dict[str, SigningKeyPair], alg: str) -> None:
    # joserfc's own registry warns on every "EdDSA" token (RFC 9864); bastion's keys are
    # Ed25519 only, so signing and verifying stay silent.
    pair = pairs[alg]
    verifier = JWTVerifier(PublicKeySet([pair.public_key]), issuer=None, audience=None, typ=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verifier.verify(sign_jwt(claims(), pair), now=NOW)


def test_non_canonical_payload_is_malformed(pairs: dict[str, SigningKeyPair]) -> None:
    # "e30" is "{}"; "e31" decodes alike with a stray low bit: refused even when signed.
    pair = pairs["ES256"]
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "ES256", "kid": pair.kid}).encode()
    ).rstrip(b"=")
    signing_input = header + b".e31"
    token = signing_input + b"." + base64.urlsafe_b64encode(pair.sign(signing_input)).rstrip(b"=")
    verifier = JWTVerifier(
        PublicKeySet([pair.public_key]), issuer=None, audience=None, typ=None, required_claims=()
    )
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(token, now=NOW)
    assert info.value.reason == "malformed"
