"""The Python verifier agrees with the vectors the native (Rust) verifier is tested against.

``tests/vectors/jwt_access_tokens.json`` was written by ``make_jwt_vectors.py`` from
this verifier (configured like ``AccessTokenVerifier``), and the Rust tests hold the
native verifier to it. Verifying every vector again here keeps both pinned to one
policy, whichever library does the JOSE work underneath.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bastion.crypto import InvalidTokenError, JWTVerifier, PublicKeySet

DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "jwt_access_tokens.json").read_text("utf-8")
)


@pytest.fixture(scope="module")
def verifier() -> JWTVerifier:
    # As make_jwt_vectors.py builds it.
    return JWTVerifier(
        PublicKeySet.from_jwks(DOCUMENT["jwks"]),
        issuer=DOCUMENT["issuer"],
        audience=None,
        typ="at+jwt",
        leeway=DOCUMENT["leeway"],
        required_claims=("exp", "iat", "jti", "client_id", "sub"),
        max_lifetime=DOCUMENT["max_lifetime"],
    )


def test_vectors_cover_every_outcome() -> None:
    outcomes = {vector["expected"] for vector in DOCUMENT["vectors"]}
    assert {"ok", "alg_not_allowed", "bad_signature", "non_canonical_signature"} <= outcomes
    assert {"forbidden_header", "crit_not_supported", "malformed", "jwe_not_accepted"} <= outcomes


@pytest.mark.parametrize(
    "vector", DOCUMENT["vectors"], ids=[vector["name"] for vector in DOCUMENT["vectors"]]
)
def test_python_verifier_agrees(verifier: JWTVerifier, vector: dict[str, Any]) -> None:
    try:
        verified = verifier.verify(vector["token"], now=DOCUMENT["now"])
    except InvalidTokenError as error:
        outcome = error.reason
    else:
        # The access-token layer above the verifier refuses an empty jti (as the generator).
        jti = verified.claims.get("jti")
        outcome = "ok" if isinstance(jti, str) and jti else "missing_claim"
    assert outcome == vector["expected"]
