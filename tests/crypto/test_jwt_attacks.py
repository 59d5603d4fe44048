"""Attacks on JWT verification: each must end in InvalidTokenError with the exact reason.

Never another exception type, never a crash: at the HTTP layer anything else is a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.crypto import (
    InvalidTokenError,
    JWTVerifier,
    PublicKeySet,
    SigningKeyPair,
    sign_jwt,
)

ISSUER = "https://auth.example.com"
AUDIENCE = "https://api.example.com"
NOW = 1_800_000_000.0
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jb64(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")))


def good_claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": AUDIENCE,
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 900,
        "jti": "j-1",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


_GOOD = object()


def signed(pair: SigningKeyPair, header: dict[str, Any], claims: Any = _GOOD) -> str:
    """A token with an arbitrary header, correctly signed by ``pair``."""
    body = good_claims() if claims is _GOOD else claims
    signing_input = f"{jb64(header)}.{jb64(body)}"
    return f"{signing_input}.{b64(pair.sign(signing_input.encode()))}"


@pytest.fixture(scope="module")
def es() -> SigningKeyPair:
    return SigningKeyPair.generate("ES256")


@pytest.fixture(scope="module")
def rs() -> SigningKeyPair:
    return SigningKeyPair.generate("RS256", rsa_key_size=2048)


@pytest.fixture(scope="module")
def ed() -> SigningKeyPair:
    return SigningKeyPair.generate("EdDSA")


@pytest.fixture(scope="module")
def check(es: SigningKeyPair, rs: SigningKeyPair, ed: SigningKeyPair) -> JWTVerifier:
    keys = PublicKeySet([es.public_key, rs.public_key, ed.public_key])
    return JWTVerifier(keys, issuer=ISSUER, audience=AUDIENCE, typ="at+jwt")


def reason_of(check: JWTVerifier, token: Any) -> str:
    with pytest.raises(InvalidTokenError) as info:
        check.verify(token, now=NOW)
    assert type(info.value) is InvalidTokenError
    assert (info.value.code, info.value.status) == ("invalid_token", 401)
    return info.value.reason


def test_baseline_token_is_accepted(check: JWTVerifier, es: SigningKeyPair) -> None:
    check.verify(sign_jwt(good_claims(), es, typ="at+jwt"), now=NOW)
    check.verify(signed(es, {"alg": "ES256", "kid": es.kid, "typ": "at+jwt"}), now=NOW)


# -- alg none / stripped signature ------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("with_signature", [False, True])
def test_alg_none(check: JWTVerifier, es: SigningKeyPair, alg: str, with_signature: bool) -> None:
    for header in ({"alg": alg, "typ": "at+jwt"}, {"alg": alg, "kid": es.kid, "typ": "at+jwt"}):
        signature = b64(b"x" * 64) if with_signature else ""
        token = f"{jb64(header)}.{jb64(good_claims())}.{signature}"
        assert reason_of(check, token) == "alg_not_allowed"


@pytest.mark.parametrize("which", ["es", "rs", "ed"])
def test_stripped_signature(check: JWTVerifier, which: str, request: Any) -> None:
    pair: SigningKeyPair = request.getfixturevalue(which)
    token = sign_jwt(good_claims(), pair, typ="at+jwt")
    head, body, _ = token.split(".")
    assert reason_of(check, f"{head}.{body}.") == "bad_signature"
    assert reason_of(check, f"{head}.{body}") == "malformed"


def test_signature_of_another_key_with_same_kid(check: JWTVerifier, es: SigningKeyPair) -> None:
    impostor = SigningKeyPair.generate("ES256")
    token = signed(impostor, {"alg": "ES256", "kid": es.kid, "typ": "at+jwt"})
    assert reason_of(check, token) == "bad_signature"


def test_tampered_payload(check: JWTVerifier, es: SigningKeyPair) -> None:
    head, _, signature = sign_jwt(good_claims(), es, typ="at+jwt").split(".")
    forged = f"{head}.{jb64(good_claims(scope='admin'))}.{signature}"
    assert reason_of(check, forged) == "bad_signature"


# -- algorithm confusion ---------------------------------------------------------


def _hs256(secret: bytes, header: dict[str, Any]) -> str:
    signing_input = f"{jb64(header)}.{jb64(good_claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.mark.parametrize("which", ["es", "rs", "ed"])
@pytest.mark.parametrize("form", ["pem", "der", "jwk"])
def test_hs256_with_public_key_as_secret(
    check: JWTVerifier, request: Any, which: str, form: str
) -> None:
    pair: SigningKeyPair = request.getfixturevalue(which)
    public = pair.public_key.key
    secret = {
        "pem": lambda: public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": lambda: public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk": lambda: json.dumps(pair.public_jwk()).encode(),
    }[form]()
    for alg in ("HS256", "HS384", "HS512", "hs256"):
        token = _hs256(secret, {"alg": alg, "kid": pair.kid, "typ": "at+jwt"})
        assert reason_of(check, token) == "alg_not_allowed"


def test_alg_must_equal_the_keys_alg(
    check: JWTVerifier, es: SigningKeyPair, rs: SigningKeyPair, ed: SigningKeyPair
) -> None:
    # signed correctly by the RSA key, but the header claims PS256 (same key type)
    token = signed(rs, {"alg": "PS256", "kid": rs.kid, "typ": "at+jwt"})
    assert reason_of(check, token) == "alg_not_allowed"
    assert reason_of(check, signed(es, {"alg": "es256", "kid": es.kid})) == "alg_not_allowed"
    assert reason_of(check, signed(ed, {"alg": "Ed25519", "kid": ed.kid})) == "alg_not_allowed"
    assert reason_of(check, signed(es, {"alg": "ES384", "kid": es.kid})) == "alg_not_allowed"
    assert reason_of(check, signed(es, {"kid": es.kid})) == "malformed"  # no alg
    assert reason_of(check, signed(es, {"alg": ["ES256"], "kid": es.kid})) == "malformed"


# -- header-supplied keys ------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # the attacker's JWKS / certificate
        type(self).hits.append(self.path)
        body = json.dumps({"keys": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Recorder,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_listener_works(listener: tuple[str, list[str]]) -> None:
    # proves the zero-hit assertions below could fail (no proxy: straight to the listener)
    url, hits = listener
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/probe") as response:
        assert response.status == 200
    assert hits == ["/probe"]


@pytest.mark.parametrize("member", ["jku", "x5u"])
@pytest.mark.parametrize("with_trusted_kid", [False, True])
def test_jku_and_x5u_are_never_fetched(
    check: JWTVerifier,
    es: SigningKeyPair,
    listener: tuple[str, list[str]],
    member: str,
    with_trusted_kid: bool,
) -> None:
    url, hits = listener
    attacker = SigningKeyPair.generate("ES256")
    kid = es.kid if with_trusted_kid else attacker.kid
    token = signed(attacker, {"alg": "ES256", "kid": kid, "typ": "at+jwt", member: f"{url}/k"})
    assert reason_of(check, token) == "forbidden_header"
    assert hits == []


def test_embedded_jwk(check: JWTVerifier, es: SigningKeyPair) -> None:
    attacker = SigningKeyPair.generate("ES256")
    for kid in (attacker.kid, es.kid):
        header = {"alg": "ES256", "kid": kid, "typ": "at+jwt", "jwk": attacker.public_jwk()}
        assert reason_of(check, signed(attacker, header)) == "forbidden_header"


def test_x5c(check: JWTVerifier, es: SigningKeyPair) -> None:
    header = {"alg": "ES256", "kid": es.kid, "typ": "at+jwt", "x5c": [b64(b"cert")]}
    assert reason_of(check, signed(es, header)) == "forbidden_header"


# -- kid tricks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../etc/passwd",
        "/dev/null",
        "' OR '1'='1",
        "x'; DROP TABLE signing_keys; --",
        "",
        "\u0000",
        "k" * 4000,
    ],
)
def test_unknown_kid(check: JWTVerifier, kid: str) -> None:
    attacker = SigningKeyPair.generate("ES256")
    assert reason_of(check, signed(attacker, {"alg": "ES256", "kid": kid, "typ": "at+jwt"})) == (
        "unknown_kid"
    )


def test_unknown_kid_refused_before_signature_work(check: JWTVerifier) -> None:
    # "A" alone is not even valid base64url: the kid is refused before the signature is read.
    token = f"{jb64({'alg': 'ES256', 'kid': 'nope'})}.{jb64(good_claims())}.A"
    assert reason_of(check, token) == "unknown_kid"


def test_huge_kid_is_too_large(check: JWTVerifier) -> None:
    token = f"{jb64({'alg': 'ES256', 'kid': 'k' * 100_000})}.{jb64(good_claims())}.AAAA"
    assert reason_of(check, token) == "too_large"


@pytest.mark.parametrize("kid", [123, 1.5, True, ["a"], {"a": "b"}])
def test_non_string_kid(check: JWTVerifier, es: SigningKeyPair, kid: Any) -> None:
    assert reason_of(check, signed(es, {"alg": "ES256", "kid": kid})) == "malformed"


def test_missing_or_null_kid(check: JWTVerifier, es: SigningKeyPair) -> None:
    assert reason_of(check, signed(es, {"alg": "ES256", "typ": "at+jwt"})) == "unknown_kid"
    assert reason_of(check, signed(es, {"alg": "ES256", "kid": None})) == "unknown_kid"


# -- ECDSA signature encodings ----------------------------------------------------------


def _with_signature(token: str, signature: bytes) -> str:
    head, body, _ = token.split(".")
    return f"{head}.{body}.{b64(signature)}"


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (0, 1), (1, 0), (P256_N, 1), (1, P256_N), (P256_N + 5, P256_N + 5)],
)
def test_ecdsa_out_of_range_values(check: JWTVerifier, es: SigningKeyPair, r: int, s: int) -> None:
    token = sign_jwt(good_claims(), es, typ="at+jwt")
    width = 32 if max(r, s) < 2**256 else 33
    signature = r.to_bytes(width, "big") + s.to_bytes(width, "big")
    assert reason_of(check, _with_signature(token, signature)) == "bad_signature"


def test_ecdsa_psychic_signature_all_zero(check: JWTVerifier, es: SigningKeyPair) -> None:
    token = sign_jwt(good_claims(), es, typ="at+jwt")
    assert reason_of(check, _with_signature(token, b"\x00" * 64)) == "bad_signature"


def test_ecdsa_der_signature_refused(check: JWTVerifier, es: SigningKeyPair) -> None:
    token = sign_jwt(good_claims(), es, typ="at+jwt")
    signing_input = token.rsplit(".", 1)[0].encode()
    private = serialization.load_pem_private_key(es.private_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    der = private.sign(signing_input, ec.ECDSA(hashes.SHA256()))  # a VALID DER signature
    assert reason_of(check, _with_signature(token, der)) == "bad_signature"
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    assert reason_of(check, _with_signature(token, encode_dss_signature(r, s))) == "bad_signature"
    # wrong lengths around the right one
    assert reason_of(check, _with_signature(token, raw[:63])) == "bad_signature"
    assert reason_of(check, _with_signature(token, raw + b"\x00")) == "bad_signature"
    assert reason_of(check, _with_signature(token, b"\x00" + raw)) == "bad_signature"


def _high_s_twin(token: str) -> str:
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    return _with_signature(token, r.to_bytes(32, "big") + (P256_N - s).to_bytes(32, "big"))


def test_own_signatures_are_low_s(es: SigningKeyPair) -> None:
    for index in range(64):  # a high S comes out of OpenSSL half the time
        token = sign_jwt(good_claims(jti=f"j-{index}"), es, typ="at+jwt")
        raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
        assert int.from_bytes(raw[32:], "big") <= P256_N // 2


def test_ecdsa_malleated_high_s_is_refused(check: JWTVerifier, es: SigningKeyPair) -> None:
    # (r, n - s) is a valid ECDSA signature too: a second encoding of the same token.
    token = sign_jwt(good_claims(), es, typ="at+jwt")
    check.verify(token, now=NOW)
    assert reason_of(check, _high_s_twin(token)) == "non_canonical_signature"


def test_high_s_accepted_only_when_allowed(es: SigningKeyPair) -> None:
    # For signers bastion does not control (client assertions, external issuers).
    lenient = JWTVerifier(
        PublicKeySet([es.public_key]),
        issuer=ISSUER,
        audience=AUDIENCE,
        typ="at+jwt",
        allow_high_s=True,
    )
    token = sign_jwt(good_claims(), es, typ="at+jwt")
    lenient.verify(_high_s_twin(token), now=NOW)


@pytest.mark.parametrize("which", ["rs", "ed"])
def test_wrong_signature_lengths(check: JWTVerifier, request: Any, which: str) -> None:
    pair: SigningKeyPair = request.getfixturevalue(which)
    token = sign_jwt(good_claims(), pair, typ="at+jwt")
    raw = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    for signature in (raw[:-1], raw + b"\x00", b"\x00" + raw, b"", b"\x00" * len(raw)):
        assert reason_of(check, _with_signature(token, signature)) == "bad_signature"


# -- claims ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"exp": int(NOW) - 31}, "expired"),
        ({"nbf": int(NOW) + 60}, "not_yet_valid"),
        ({"iat": int(NOW) + 31}, "issued_in_future"),
        ({"iss": "https://evil.example.com"}, "wrong_issuer"),
        ({"iss": ISSUER + "/"}, "wrong_issuer"),
        ({"aud": "https://evil.example.com"}, "wrong_audience"),
        ({"aud": ["https://a.example.com", "https://b.example.com"]}, "wrong_audience"),
        ({"exp": None}, "missing_claim"),
        ({"aud": None}, "missing_claim"),
    ],
)
def test_claim_attacks(
    check: JWTVerifier, es: SigningKeyPair, changes: dict[str, Any], expected: str
) -> None:
    assert reason_of(check, sign_jwt(good_claims(**changes), es, typ="at+jwt")) == expected


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt", "dpop+jwt", "at+jwe"])
def test_wrong_typ(check: JWTVerifier, es: SigningKeyPair, typ: str) -> None:
    assert reason_of(check, sign_jwt(good_claims(), es, typ=typ)) == "wrong_typ"


@pytest.mark.parametrize("typ", ["AT+JWT", "application/at+jwt", "Application/At+Jwt"])
def test_typ_case_variants_pass(check: JWTVerifier, es: SigningKeyPair, typ: str) -> None:
    check.verify(sign_jwt(good_claims(), es, typ=typ), now=NOW)


def test_claims_not_an_object(check: JWTVerifier, es: SigningKeyPair) -> None:
    header = {"alg": "ES256", "kid": es.kid, "typ": "at+jwt"}
    for body in ([1, 2], "claims", 5, None):
        assert reason_of(check, signed(es, header, body)) == "malformed"


# -- header extensions ------------------------------------------------------------------


def test_crit(check: JWTVerifier, es: SigningKeyPair) -> None:
    for crit in (["exp"], ["x-custom"], [], "exp"):
        header = {"alg": "ES256", "kid": es.kid, "typ": "at+jwt", "crit": crit, "x-custom": 1}
        assert reason_of(check, signed(es, header)) == "crit_not_supported"


def test_b64_false(check: JWTVerifier, es: SigningKeyPair) -> None:
    base = {"alg": "ES256", "kid": es.kid, "typ": "at+jwt", "b64": False}
    assert reason_of(check, signed(es, base)) == "forbidden_header"
    assert reason_of(check, signed(es, {**base, "crit": ["b64"]})) == "forbidden_header"


def test_jwe_in_place_of_jws(check: JWTVerifier, es: SigningKeyPair) -> None:
    header = jb64({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": es.kid})
    jwe = f"{header}.{b64(b'k' * 256)}.{b64(b'iv' * 6)}.{b64(b'ciphertext')}.{b64(b't' * 16)}"
    assert reason_of(check, jwe) == "jwe_not_accepted"
    direct = f"{jb64({'alg': 'dir', 'enc': 'A128GCM'})}..{b64(b'iv' * 6)}.{b64(b'c')}.{b64(b't')}"
    assert reason_of(check, direct) == "jwe_not_accepted"
    # a three-part token whose header says it is encrypted
    three = signed(es, {"alg": "ES256", "kid": es.kid, "enc": "A256GCM"})
    assert reason_of(check, three) == "jwe_not_accepted"


# -- malformed input ------------------------------------------------------------------------


def _ok_parts(es: SigningKeyPair) -> list[str]:
    return sign_jwt(good_claims(), es, typ="at+jwt").split(".")


@pytest.mark.parametrize(
    "build",
    [
        lambda p: "",
        lambda p: ".",
        lambda p: "..",
        lambda p: "...",
        lambda p: f"{p[0]}.{p[1]}",
        lambda p: f"{p[0]}.{p[1]}.{p[2]}.{p[2]}",
        lambda p: f"{p[0]}.{p[1]}.{p[2]}.",
        lambda p: f".{p[1]}.{p[2]}",
        lambda p: f"{p[0]}..{p[2]}",
        lambda p: f"{p[0]}=.{p[1]}.{p[2]}",
        lambda p: f"{p[0]}.{p[1]}.{p[2]}==",
        lambda p: f"{p[0]}.{p[1]}.{p[2]} ",
        lambda p: f" {p[0]}.{p[1]}.{p[2]}",
        lambda p: f"{p[0]}.{p[1]}\n.{p[2]}",
        lambda p: f"{p[0].replace('e', '+')}.{p[1]}.{p[2]}",
        lambda p: f"{p[0]}.{p[1]}.{p[2].replace('A', '/')}x/",
        lambda p: f"{p[0]}A.{p[1]}.{p[2]}",  # length % 4 == 1
        lambda p: f"Bearer {p[0]}.{p[1]}.{p[2]}",
    ],
)
def test_malformed_structure(check: JWTVerifier, es: SigningKeyPair, build: Any) -> None:
    token = build(_ok_parts(es))
    assert reason_of(check, token) == "malformed"
    assert reason_of(check, token.encode()) == "malformed"


@pytest.mark.parametrize(
    "header_text",
    [
        b"not json",
        b'{"alg": "ES256", ',
        b"[1, 2]",
        b'["alg", "ES256"]',
        b'"ES256"',
        b"null",
        b"42",
        b"\xff\xfe{}",
        b'{"alg": "ES256", "kid": "\\ud800"}',  # lone surrogate
        b'{"alg": "ES256", "alg": "none"}',  # duplicate member
        b'{"alg": "none", "alg": "ES256"}',
        b'{"alg": "ES256", "kid": NaN}',
    ],
)
def test_malformed_header(check: JWTVerifier, es: SigningKeyPair, header_text: bytes) -> None:
    parts = _ok_parts(es)
    assert reason_of(check, f"{b64(header_text)}.{parts[1]}.{parts[2]}") == "malformed"


def test_duplicate_members_detected(check: JWTVerifier, es: SigningKeyPair) -> None:
    head = b64(f'{{"alg":"ES256","kid":"{es.kid}","typ":"at+jwt","typ":"at+jwt"}}')
    body = b64(json.dumps(good_claims()))
    signing_input = f"{head}.{body}"
    token = f"{signing_input}.{b64(es.sign(signing_input.encode()))}"
    assert reason_of(check, token) == "malformed"
    # duplicate claim, correctly signed: which "aud" would a second parser see?
    head = jb64({"alg": "ES256", "kid": es.kid, "typ": "at+jwt"})
    for separators in ((", ", ": "), (",", ":")):  # spaced, and compact like bastion's own
        text = json.dumps(good_claims(), separators=separators)
        body = b64(text[:-1] + ',"aud":"https://evil.example.com"}')
        signing_input = f"{head}.{body}"
        token = f"{signing_input}.{b64(es.sign(signing_input.encode()))}"
        assert reason_of(check, token) == "malformed"
    # nested duplicates too
    body = b64(json.dumps(good_claims(cnf="X"))[:-1].replace('"X"', '{"a":1,"a":2}') + "}")
    signing_input = f"{head}.{body}"
    token = f"{signing_input}.{b64(es.sign(signing_input.encode()))}"
    assert reason_of(check, token) == "malformed"


def test_non_canonical_base64(check: JWTVerifier, es: SigningKeyPair) -> None:
    # "e30" is "{}"; "e31" decodes to the same bytes with a stray low bit set
    parts = _ok_parts(es)
    assert base64.urlsafe_b64decode("e31=") == base64.urlsafe_b64decode("e30=")
    assert reason_of(check, f"e31.{parts[1]}.{parts[2]}") == "malformed"


def test_non_ascii(check: JWTVerifier, es: SigningKeyPair) -> None:
    parts = _ok_parts(es)
    assert reason_of(check, f"{parts[0]}.{parts[1]}é.{parts[2]}") == "malformed"
    assert reason_of(check, f"{parts[0]}.{parts[1]}.{parts[2]}".encode() + b"\xff") == "malformed"
    assert reason_of(check, "\u202e" + ".".join(parts)) == "malformed"
    assert reason_of(check, "\ud800") == "malformed"


@pytest.mark.parametrize("token", [None, 5, 5.0, ["a.b.c"], {"t": 1}, object()])
def test_not_a_string(check: JWTVerifier, token: Any) -> None:
    assert reason_of(check, token) == "malformed"


def test_oversized_rejected_before_decoding(es: SigningKeyPair) -> None:
    check = JWTVerifier(
        PublicKeySet([es.public_key]), issuer=ISSUER, audience=AUDIENCE, typ=None, max_size=1000
    )
    token = sign_jwt(good_claims(pad="x" * 1000), es)
    assert reason_of(check, token) == "too_large"
    # Not ASCII, not base64, not JWS: "too_large" shows nothing else was looked at.
    assert reason_of(check, "é" * 1001) == "too_large"
    assert reason_of(check, b"\xff" * 1001) == "too_large"
    assert reason_of(check, "." * 1001) == "too_large"
    just_fits = sign_jwt(good_claims(), es)
    assert len(just_fits) < 1000
    check.verify(just_fits, now=NOW)


def test_default_size_cap_is_8192(check: JWTVerifier, es: SigningKeyPair) -> None:
    token = sign_jwt(good_claims(pad="x" * 9000), es, typ="at+jwt")
    assert reason_of(check, token) == "too_large"


# -- fuzzing ---------------------------------------------------------------------------------

_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _only_invalid_token(check: JWTVerifier, token: Any) -> None:
    try:
        check.verify(token, now=NOW)
    except InvalidTokenError as error:
        assert type(error) is InvalidTokenError
        assert isinstance(error.reason, str)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=st.text(max_size=300) | st.binary(max_size=300))
def test_fuzz_random_input(check: JWTVerifier, token: str | bytes) -> None:
    with pytest.raises(InvalidTokenError):
        check.verify(token, now=NOW)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(st.text(alphabet=_B64_CHARS + ".=", max_size=120), min_size=1, max_size=6))
def test_fuzz_base64_shaped(check: JWTVerifier, parts: list[str]) -> None:
    with pytest.raises(InvalidTokenError):
        check.verify(".".join(parts), now=NOW)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "enc", "jku", "b64", "x", "cty"]),
        _json_values | st.sampled_from(["ES256", "none", "HS256", "at+jwt"]),
        max_size=5,
    ),
    claims=_json_values,
    use_real_kid=st.booleans(),
    sign=st.booleans(),
)
def test_fuzz_structured(
    check: JWTVerifier,
    es: SigningKeyPair,
    header: dict[str, Any],
    claims: Any,
    use_real_kid: bool,
    sign: bool,
) -> None:
    if use_real_kid:
        header["kid"] = es.kid
    signing_input = f"{jb64(header)}.{jb64(claims)}"
    signature = es.sign(signing_input.encode()) if sign else b"\x01" * 64
    _only_invalid_token(check, f"{signing_input}.{b64(signature)}")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    claims=st.dictionaries(st.sampled_from(["exp", "nbf", "iat", "iss", "aud", "x"]), _json_values)
)
def test_fuzz_signed_claims(check: JWTVerifier, es: SigningKeyPair, claims: dict[str, Any]) -> None:
    _only_invalid_token(check, signed(es, {"alg": "ES256", "kid": es.kid, "typ": "at+jwt"}, claims))
