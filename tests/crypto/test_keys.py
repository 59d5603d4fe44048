"""Signing keys (SigningKeyPair) and trusted key sets (PublicKey / PublicKeySet)."""

from __future__ import annotations

import base64
import copy
import pickle
from typing import Any, get_args

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from jwcrypto import jwk as jwcrypto_jwk

from bastion.crypto import (
    InvalidKeyError,
    PublicKey,
    PublicKeySet,
    SigningAlgorithm,
    SigningKeyPair,
    UnusableKeyError,
    jwk_thumbprint,
)

ALGS: tuple[SigningAlgorithm, ...] = get_args(SigningAlgorithm)
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture(scope="module")
def pairs() -> dict[str, SigningKeyPair]:
    # 2048-bit RSA keeps the module fast; the default size is covered separately.
    return {alg: SigningKeyPair.generate(alg, rsa_key_size=2048) for alg in ALGS}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- SigningKeyPair ------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_generate_public_jwk_shape(pairs: dict[str, SigningKeyPair], alg: str) -> None:
    pair = pairs[alg]
    jwk = pair.public_jwk()
    assert pair.alg == alg
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == (pair.kid, alg, "sig")
    assert not PRIVATE_MEMBERS & set(jwk)
    expected = {
        "ES256": {"kty", "crv", "x", "y"},
        "RS256": {"kty", "n", "e"},
        "PS256": {"kty", "n", "e"},
        "EdDSA": {"kty", "crv", "x"},
    }[alg]
    assert set(jwk) == expected | {"kid", "alg", "use"}
    # a fresh dict every time: callers cannot corrupt the key by editing it
    jwk["kid"] = "changed"
    assert pair.public_jwk()["kid"] == pair.kid


@pytest.mark.parametrize("alg", ALGS)
def test_kid_is_rfc7638_thumbprint_matching_jwcrypto(
    pairs: dict[str, SigningKeyPair], alg: str
) -> None:
    pair = pairs[alg]
    public = pair.public_jwk()
    assert pair.kid == jwcrypto_jwk.JWK(**public).thumbprint()
    assert pair.kid == jwk_thumbprint(public)
    assert len(pair.kid) == 43


def test_thumbprint_rfc7638_example() -> None:
    # RFC 7638 §3.1 example key and its thumbprint.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"
            "BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"
            "FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
            "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_refuses_unknown_type() -> None:
    with pytest.raises(InvalidKeyError) as info:
        jwk_thumbprint({"kty": "oct", "k": "AAAA"})
    assert info.value.code == "invalid_key"
    assert str(info.value) == "cannot compute a thumbprint for key type 'oct'"


@pytest.mark.parametrize("alg", ALGS)
def test_private_bytes_round_trip(pairs: dict[str, SigningKeyPair], alg: SigningAlgorithm) -> None:
    pair = pairs[alg]
    pem = pair.private_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    loaded = SigningKeyPair.from_private_bytes(pem, kid=pair.kid, alg=alg)
    assert (loaded.kid, loaded.alg) == (pair.kid, alg)
    assert loaded.public_jwk() == pair.public_jwk()
    assert loaded.private_bytes() == pem


def test_from_private_bytes_refuses_wrong_algorithm(pairs: dict[str, SigningKeyPair]) -> None:
    es_pem = pairs["ES256"].private_bytes()
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.from_private_bytes(es_pem, kid="k", alg="RS256")
    assert str(info.value) == "an RS256 key must be an RSA private key"
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.from_private_bytes(pairs["RS256"].private_bytes(), kid="k", alg="EdDSA")
    assert str(info.value) == "an EdDSA key must be an Ed25519 private key"


def test_from_private_bytes_refuses_garbage_without_echoing_it() -> None:
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.from_private_bytes(b"not a key SECRETSECRET", kid="k1", alg="ES256")
    assert str(info.value) == "key 'k1': stored private key is not an unencrypted PEM private key"
    assert "SECRET" not in str(info.value)


def test_from_private_bytes_refuses_other_curve_and_small_rsa() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.from_private_bytes(p384, kid="k", alg="ES256")
    assert str(info.value) == "an ES256 key must be an EC P-256 private key"
    small = rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.from_private_bytes(small, kid="k", alg="RS256")
    assert str(info.value) == "RSA key of 1024 bits refused: at least 2048 bits are required"
    ed = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidKeyError):
        SigningKeyPair.from_private_bytes(ed, kid="k", alg="EdDSA")


def test_generate_refuses_small_rsa_and_unknown_alg() -> None:
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.generate("RS256", rsa_key_size=1024)
    assert str(info.value) == "RSA key size 1024 refused: at least 2048 bits are required"
    with pytest.raises(InvalidKeyError):
        SigningKeyPair.generate("HS256")  # type: ignore[arg-type]


def test_generate_refuses_rsa_over_4096_bits() -> None:
    # The native gateway signs with ring: RSA keys of 2048 to 4096 bits (no key generated).
    with pytest.raises(InvalidKeyError) as info:
        SigningKeyPair.generate("PS256", rsa_key_size=4104)
    assert str(info.value) == (
        "RSA key size 4104 refused: at most 4096 bits (the native gateway cannot sign with "
        "a larger key)"
    )
    assert SigningKeyPair.generate("RS256", rsa_key_size=4096).alg == "RS256"


def test_default_rsa_size_is_3072() -> None:
    pair = SigningKeyPair.generate("PS256")
    n = base64.urlsafe_b64decode(pair.public_jwk()["n"] + "==")
    assert len(n) * 8 == 3072


@pytest.mark.parametrize("alg", ALGS)
def test_repr_and_str_never_show_private_material(
    pairs: dict[str, SigningKeyPair], alg: str
) -> None:
    pair = pairs[alg]
    pem = pair.private_bytes().decode()
    body = "".join(pem.splitlines()[1:-1])
    for text in (repr(pair), str(pair), f"{pair}", repr([pair]), repr(pair.public_key)):
        assert body[:40] not in text
        assert "PRIVATE" not in text
        assert text.endswith(f"(kid={pair.kid!r}, alg={alg!r})") or text.endswith(
            f"(kid={pair.kid!r}, alg={alg!r})]"
        )


def test_signing_key_pair_is_immutable_and_not_picklable(pairs: dict[str, SigningKeyPair]) -> None:
    pair = pairs["ES256"]
    with pytest.raises(AttributeError):
        pair.kid = "other"
    with pytest.raises(TypeError):
        pickle.dumps(pair)
    with pytest.raises(TypeError):
        copy.deepcopy(pair)


def test_keys_are_distinct() -> None:
    assert SigningKeyPair.generate("ES256").kid != SigningKeyPair.generate("ES256").kid


# -- PublicKey.from_jwk / PublicKeySet.from_jwks --------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_from_jwks_round_trip(pairs: dict[str, SigningKeyPair], alg: str) -> None:
    jwk = pairs[alg].public_jwk()
    key_set = PublicKeySet.from_jwks({"keys": [jwk]})
    key = key_set.get(jwk["kid"])
    assert key is not None
    assert (key.kid, key.alg) == (jwk["kid"], alg)
    assert key.jwk() == jwk
    assert key_set.kids() == (jwk["kid"],)
    assert key_set.jwks() == {"keys": [jwk]}
    assert len(key_set) == 1
    assert jwk["kid"] in key_set


def test_alg_inferred_only_for_ec_and_okp(pairs: dict[str, SigningKeyPair]) -> None:
    es = {k: v for k, v in pairs["ES256"].public_jwk().items() if k not in ("alg", "use")}
    ed = {k: v for k, v in pairs["EdDSA"].public_jwk().items() if k != "alg"}
    rs = {k: v for k, v in pairs["RS256"].public_jwk().items() if k != "alg"}
    assert PublicKey.from_jwk(es).alg == "ES256"
    assert PublicKey.from_jwk(ed).alg == "EdDSA"
    with pytest.raises(InvalidKeyError) as info:
        PublicKey.from_jwk(rs)
    assert str(info.value) == (
        f"JWK {rs['kid']!r}: an RSA key must name its algorithm ('alg': RS256 or PS256)"
    )


def _with(jwk: dict[str, Any], **changes: Any) -> dict[str, Any]:
    result = dict(jwk)
    for name, value in changes.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


@pytest.mark.parametrize("member", sorted(PRIVATE_MEMBERS))
def test_private_members_refused(pairs: dict[str, SigningKeyPair], member: str) -> None:
    jwk = _with(pairs["ES256"].public_jwk(), **{member: "AAAA"})
    with pytest.raises(InvalidKeyError) as info:
        PublicKeySet.from_jwks({"keys": [jwk]})
    assert str(info.value) == (
        f"JWK {jwk['kid']!r} holds private or symmetric key members {[member]}: "
        "publish only public keys"
    )


def test_real_private_jwk_refused(pairs: dict[str, SigningKeyPair]) -> None:
    pem = pairs["RS256"].private_bytes()
    private = jwcrypto_jwk.JWK.from_pem(pem).export_private(as_dict=True)
    private.update(kid="rsa", alg="RS256")
    with pytest.raises(InvalidKeyError) as info:
        PublicKey.from_jwk(private)
    assert "holds private or symmetric key members ['d', 'dp', 'dq', 'p', 'q', 'qi']" in str(
        info.value
    )


def test_symmetric_key_refused() -> None:
    with pytest.raises(InvalidKeyError) as info:
        PublicKey.from_jwk({"kty": "oct", "kid": "h", "alg": "HS256"})
    assert str(info.value) == "JWK 'h': symmetric ('oct') keys are refused"


def test_duplicate_kids_refused(pairs: dict[str, SigningKeyPair]) -> None:
    a = pairs["ES256"].public_jwk()
    b = _with(pairs["EdDSA"].public_jwk(), kid=a["kid"])
    with pytest.raises(InvalidKeyError) as info:
        PublicKeySet.from_jwks({"keys": [a, b]})
    assert str(info.value) == f"key id {a['kid']!r} appears twice in the key set"
    with pytest.raises(InvalidKeyError):
        PublicKeySet([pairs["ES256"].public_key, pairs["ES256"].public_key])


def test_small_rsa_public_key_refused() -> None:
    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": "small",
        "alg": "RS256",
        "n": _b64(numbers.n.to_bytes(128, "big")),
        "e": "AQAB",
    }
    with pytest.raises(InvalidKeyError) as info:
        PublicKey.from_jwk(jwk)
    assert str(info.value) == (
        "JWK 'small': RSA key of 1024 bits refused: at least 2048 bits are required"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kid": None}, "every JWK needs a 'kid' of 1..256 characters"),
        ({"kid": ""}, "every JWK needs a 'kid' of 1..256 characters"),
        ({"kid": 7}, "every JWK needs a 'kid' of 1..256 characters"),
        ({"kid": "k" * 257}, "every JWK needs a 'kid' of 1..256 characters"),
        ({"alg": "RS256"}, "JWK 'k': algorithm 'RS256' does not fit a P-256 key"),
        ({"alg": "ES384"}, "JWK 'k': algorithm 'ES384' does not fit a P-256 key"),
        ({"alg": 5}, "JWK 'k': 'alg' must be a string"),
        ({"x": None}, "JWK 'k': member 'x' must be non-empty base64url text"),
        ({"x": "AA=="}, "JWK 'k': member 'x' must be non-empty base64url text"),
        ({"x": "AAAB"}, "JWK 'k': P-256 coordinates must be 32 bytes each"),
        ({"x": _b64(b"\x00" * 31 + b"\x01")}, "JWK 'k': the point is not on the P-256 curve"),
    ],
)
def test_malformed_ec_jwk_refused(
    pairs: dict[str, SigningKeyPair], changes: dict[str, Any], message: str
) -> None:
    jwk = _with(pairs["ES256"].public_jwk(), kid="k")
    jwk = _with(jwk, **changes)
    with pytest.raises(InvalidKeyError) as info:
        PublicKey.from_jwk(jwk)
    assert type(info.value) is InvalidKeyError
    assert str(info.value) == message
    # one bad key refuses the whole set, even next to a good one
    with pytest.raises(InvalidKeyError) as info:
        PublicKeySet.from_jwks({"keys": [pairs["EdDSA"].public_jwk(), jwk]})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"use": "enc"}, "JWK 'k' has use 'enc'; a verification key needs 'sig'"),
        ({"key_ops": ["encrypt"]}, "JWK 'k': key_ops does not allow 'verify'"),
        ({"key_ops": "verify"}, "JWK 'k': key_ops does not allow 'verify'"),
        ({"crv": "P-384", "alg": "ES384"}, "JWK 'k': only EC keys on P-256 are supported"),
        ({"crv": "secp256k1"}, "JWK 'k': only EC keys on P-256 are supported"),
        ({"kty": "EC2"}, "JWK 'k': unsupported key type 'EC2'"),
        ({"kty": None}, "JWK 'k': unsupported key type None"),
    ],
)
def test_unusable_jwk_skipped_in_sets(
    pairs: dict[str, SigningKeyPair], changes: dict[str, Any], message: str
) -> None:
    jwk = _with(_with(pairs["ES256"].public_jwk(), kid="k"), **changes)
    with pytest.raises(UnusableKeyError) as info:
        PublicKey.from_jwk(jwk)
    assert str(info.value) == message
    good = pairs["EdDSA"].public_jwk()
    key_set = PublicKeySet.from_jwks({"keys": [jwk, good]})
    assert key_set.kids() == (good["kid"],)
    assert key_set.skipped == (("k", message),)


def test_okp_other_curves_unusable(pairs: dict[str, SigningKeyPair]) -> None:
    jwk = _with(pairs["EdDSA"].public_jwk(), kid="k", crv="X25519")
    with pytest.raises(UnusableKeyError) as info:
        PublicKey.from_jwk(jwk)
    assert str(info.value) == "JWK 'k': only OKP keys on Ed25519 are supported"
    jwk = _with(pairs["EdDSA"].public_jwk(), kid="k", alg="ES256")
    with pytest.raises(InvalidKeyError) as refused:
        PublicKey.from_jwk(jwk)
    assert type(refused.value) is InvalidKeyError
    assert str(refused.value) == "JWK 'k': algorithm 'ES256' does not fit an Ed25519 key"


def test_keycloak_style_jwks_with_encryption_key(pairs: dict[str, SigningKeyPair]) -> None:
    sig = pairs["RS256"].public_jwk()
    enc = _with(sig, kid="enc-1", use="enc", alg="RSA-OAEP")
    no_alg = _with(sig, kid="no-alg", alg=None)
    key_set = PublicKeySet.from_jwks({"keys": [enc, sig, no_alg]})
    assert key_set.kids() == (sig["kid"],)
    assert [kid for kid, _ in key_set.skipped] == ["enc-1", "no-alg"]


def test_allowed_algs_restricts(pairs: dict[str, SigningKeyPair]) -> None:
    jwk = pairs["RS256"].public_jwk()
    with pytest.raises(UnusableKeyError) as info:
        PublicKey.from_jwk(jwk, allowed_algs=("ES256",))
    assert str(info.value) == f"JWK {jwk['kid']!r}: algorithm 'RS256' is not allowed here"
    key_set = PublicKeySet.from_jwks({"keys": [jwk]}, allowed_algs=("ES256",))
    assert len(key_set) == 0
    assert key_set.skipped == ((jwk["kid"], str(info.value)),)


@pytest.mark.parametrize(
    "document", [{}, {"keys": {}}, {"keys": "x"}, [], "keys", {"keys": [1]}, {"keys": [[]]}]
)
def test_not_a_jwk_set(document: Any) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKeySet.from_jwks(document)


def test_too_many_keys_refused(pairs: dict[str, SigningKeyPair]) -> None:
    jwk = pairs["EdDSA"].public_jwk()
    keys = [_with(jwk, kid=f"k{i}") for i in range(101)]
    with pytest.raises(InvalidKeyError) as info:
        PublicKeySet.from_jwks({"keys": keys})
    assert str(info.value) == "a JWK Set with more than 100 keys is refused"
    assert len(PublicKeySet.from_jwks({"keys": keys[:100]})) == 100


def test_public_key_set_is_a_snapshot(pairs: dict[str, SigningKeyPair]) -> None:
    keys = [pairs["ES256"].public_key]
    key_set = PublicKeySet(keys)
    keys.append(pairs["EdDSA"].public_key)
    assert key_set.kids() == (pairs["ES256"].kid,)
    assert repr(key_set) == f"PublicKeySet(kids=({pairs['ES256'].kid!r},))"
