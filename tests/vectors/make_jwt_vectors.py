"""Generate ``jwt_access_tokens.json``: JWT access-token vectors for the native verifier.

Valid tokens are signed with joserfc (ES256, RS256, PS256, EdDSA); forged ones
are built by hand (alg none, RS/HS confusion, wrong kid, tampered payload, high-S
twin, forbidden headers, …). The expected outcome of every vector is what
bastion's Python verifier (``bastion.crypto.jwt.JWTVerifier`` configured like
``AccessTokenVerifier``) says, so the Rust tests check agreement with the
specification. Run: ``.venv/bin/python tests/vectors/make_jwt_vectors.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from bastion.crypto.jwt import InvalidTokenError, JWTVerifier
from bastion.crypto.keys import PublicKeySet

ISSUER = "https://issuer.example"
AUDIENCE = "https://issuer.example"
NOW = 1_800_000_000
LEEWAY = 30.0
MAX_LIFETIME = 3600.0
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": AUDIENCE,
        "client_id": "client-1",
        "scope": "orders:read orders:write",
        "jti": "jti-1",
        "iat": NOW - 10,
        "exp": NOW + 600,
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def main() -> None:
    es = ECKey.generate_key("P-256", parameters={"kid": "es", "alg": "ES256"})
    rs = RSAKey.generate_key(2048, parameters={"kid": "rs", "alg": "RS256"})
    ps = RSAKey.generate_key(2048, parameters={"kid": "ps", "alg": "PS256"})
    ed = OKPKey.generate_key("Ed25519", parameters={"kid": "ed", "alg": "EdDSA"})
    keys = {"ES256": es, "RS256": rs, "PS256": ps, "EdDSA": ed}
    jwks = {"keys": [key.as_dict(private=False) for key in keys.values()]}

    def sign(alg: str, payload: dict[str, Any], **header: Any) -> str:
        protected = {"alg": alg, "kid": keys[alg].kid, "typ": "at+jwt", **header}
        protected = {k: v for k, v in protected.items() if v is not None}
        token = jws.serialize_compact(
            protected, json.dumps(payload, separators=(",", ":")), keys[alg], algorithms=[alg]
        )
        if alg != "ES256":
            return token
        # ECDSA signers pick either S; bastion's own signatures are low S (canonical).
        signing_input, _, sig = token.rpartition(".")
        raw = base64.urlsafe_b64decode(sig + "==")
        s = int.from_bytes(raw[32:], "big")
        low = raw[:32] + min(s, P256_N - s).to_bytes(32, "big")
        return f"{signing_input}.{b64(low)}"

    def sign_es_raw(protected: dict[str, Any], payload: dict[str, Any] | bytes) -> str:
        # By hand, for headers joserfc itself refuses to produce (crit, jku, …).
        body = b64(payload) if isinstance(payload, bytes) else b64json(payload)
        signing_input = f"{b64json(protected)}.{body}"
        der = es.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        s = min(s, P256_N - s)
        return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def es_header(**extra: Any) -> dict[str, Any]:
        return {"alg": "ES256", "kid": "es", "typ": "at+jwt", **extra}

    vectors: list[tuple[str, str]] = []
    for alg in keys:
        vectors.append((f"valid {alg}", sign(alg, claims())))
    vectors.append(("typ application/at+jwt", sign("ES256", claims(), typ="application/AT+JWT")))
    vectors.append(("aud list", sign("ES256", claims(aud=["x", AUDIENCE]))))
    # -- forged and refused ----------------------------------------------------
    valid = sign("ES256", claims())
    head, body, sig = valid.split(".")
    vectors.append(
        ("alg none", f"{b64json({'alg': 'none', 'kid': 'es', 'typ': 'at+jwt'})}.{body}.")
    )
    vectors.append(
        ("alg None", f"{b64json({'alg': 'None', 'kid': 'es', 'typ': 'at+jwt'})}.{body}.")
    )
    pem = rs.as_pem(private=False)
    hs_head = b64json({"alg": "HS256", "kid": "rs", "typ": "at+jwt"})
    hs_sig = hmac.new(pem, f"{hs_head}.{body}".encode(), hashlib.sha256).digest()
    vectors.append(("alg confusion RS key as HS256 secret", f"{hs_head}.{body}.{b64(hs_sig)}"))
    rs_token = sign("RS256", claims())
    _, rb, rsig = rs_token.split(".")
    ps_head = b64json({"alg": "PS256", "kid": "rs", "typ": "at+jwt"})
    vectors.append(("alg PS256 on an RS256 key", f"{ps_head}.{rb}.{rsig}"))
    es_on_ed = b64json({"alg": "ES256", "kid": "ed", "typ": "at+jwt"})
    vectors.append(("alg ES256 on an EdDSA key", f"{es_on_ed}.{body}.{sig}"))
    vectors.append(("unknown kid", sign("ES256", claims(), kid="nope")))
    vectors.append(("no kid", sign("ES256", claims(), kid=None)))
    tampered = b64json(claims(sub="admin"))
    vectors.append(("tampered payload", f"{head}.{tampered}.{sig}"))
    vectors.append(("signature of another token", f"{head}.{body}.{rsig}"))
    raw = base64.urlsafe_b64decode(sig + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    twin = r.to_bytes(32, "big") + (P256_N - s).to_bytes(32, "big")
    vectors.append(("ES256 high-S twin", f"{head}.{body}.{b64(twin)}"))
    der = encode_dss_signature(*decode_dss_signature(encode_dss_signature(r, s)))
    vectors.append(("ES256 DER signature", f"{head}.{body}.{b64(der)}"))
    vectors.append(("empty signature", f"{head}.{body}."))
    vectors.append(("b64 header", sign_es_raw(es_header(b64=False), claims())))
    vectors.append(("enc header", sign_es_raw(es_header(enc="A128GCM"), claims())))
    vectors.append(("kid not a string", sign_es_raw(es_header(kid=1), claims())))
    vectors.append(
        (
            "duplicate claim",
            sign_es_raw(
                es_header(), json.dumps(claims()).replace("{", '{"sub": "admin", ', 1).encode()
            ),
        )
    )
    vectors.append(("expired", sign("ES256", claims(iat=NOW - 700, exp=NOW - 31))))
    vectors.append(("expired within leeway", sign("ES256", claims(iat=NOW - 700, exp=NOW - 29))))
    vectors.append(("not yet valid", sign("ES256", claims(nbf=NOW + 31))))
    vectors.append(("issued in the future", sign("ES256", claims(iat=NOW + 31))))
    vectors.append(("lifetime too long", sign("ES256", claims(exp=NOW + 7200))))
    vectors.append(("missing exp", sign("ES256", claims(exp=None))))
    vectors.append(("missing jti", sign("ES256", claims(jti=None))))
    vectors.append(("empty jti", sign("ES256", claims(jti=""))))
    vectors.append(("missing client_id", sign("ES256", claims(client_id=None))))
    vectors.append(("exp as a string", sign("ES256", claims(exp=str(NOW + 600)))))
    vectors.append(("exp as a boolean", sign("ES256", claims(exp=True))))
    vectors.append(("wrong iss", sign("ES256", claims(iss="https://evil.example"))))
    vectors.append(("missing iss", sign("ES256", claims(iss=None))))
    vectors.append(("wrong typ", sign("ES256", claims(), typ="JWT")))
    vectors.append(("missing typ", sign("ES256", claims(), typ=None)))
    vectors.append(("crit header", sign_es_raw(es_header(crit=["exp"], exp=1), claims())))
    vectors.append(
        ("jku header", sign_es_raw(es_header(jku="https://evil.example/jwks"), claims()))
    )
    vectors.append(("x5u header", sign_es_raw(es_header(x5u="https://evil.example/x5u"), claims())))
    vectors.append(
        ("embedded jwk", sign_es_raw(es_header(jwk=es.as_dict(private=False)), claims()))
    )
    dup_head = b64(b'{"alg":"ES256","kid":"es","typ":"at+jwt","kid":"es"}')
    vectors.append(("duplicate header member", f"{dup_head}.{body}.{sig}"))
    vectors.append(("JWE", "a.b.c.d.e"))
    vectors.append(("padded", f"{head}=.{body}.{sig}"))
    vectors.append(("two parts", f"{head}.{body}"))

    public = PublicKeySet.from_jwks(jwks)
    verifier = JWTVerifier(
        public,
        issuer=ISSUER,
        audience=None,
        typ="at+jwt",
        leeway=LEEWAY,
        required_claims=("exp", "iat", "jti", "client_id", "sub"),
        max_lifetime=MAX_LIFETIME,
    )
    out = []
    for name, token in vectors:
        try:
            verified = verifier.verify(token, now=NOW)
            jti = verified.claims.get("jti")
            expected = "ok" if isinstance(jti, str) and jti else "missing_claim"
        except InvalidTokenError as error:
            expected = error.reason
        out.append({"name": name, "token": token, "expected": expected})
    document = {
        "comment": "generated by make_jwt_vectors.py; expected = bastion's Python verifier",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": NOW,
        "leeway": LEEWAY,
        "max_lifetime": MAX_LIFETIME,
        "jwks": jwks,
        "vectors": out,
    }
    path = Path(__file__).with_name("jwt_access_tokens.json")
    path.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
