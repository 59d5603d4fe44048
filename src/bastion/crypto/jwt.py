"""JSON Web Tokens: signing (RFC 7519 / RFC 7515 compact JWS) and strict verification.

joserfc does the JOSE work — base64url, the compact serialization, the JWS
algorithms (:mod:`bastion.crypto.jwa`) and the keys (:mod:`bastion.crypto.keys`);
this module is the policy around it, RFC 8725 (JWT Best Current Practices).
Verification refuses with cheap checks before any signature work, in this order:

1. size cap, ASCII, exactly three strict base64url parts — the compact
   serialization only (five parts = JWE, refused as ``jwe_not_accepted``; the
   JSON serializations are not tokens here);
2. header: a JSON object without duplicate members; ``alg`` never "none";
   no ``jku``/``x5u``/``jwk``/``x5c`` (keys come only from the verifier's own
   key set, nothing is ever fetched), no ``crit``, no ``b64``, no ``enc``; ``kid``
   must name a trusted key and ``alg`` must EQUAL that key's one algorithm (never
   chosen by the token: joserfc is handed a registry knowing only that one);
3. canonical signature bytes for that key: ES256 raw ``r || s`` of exactly 64
   bytes (DER or any other length refused) with ``0 < r < n`` and ``0 < s < n``,
   and low ``s <= n/2`` — the high-S twin of a signature is refused, so a token
   has exactly one valid encoding, unless the verifier was built with
   ``allow_high_s=True`` for signers bastion does not control; RSA signatures
   exactly modulus-sized; Ed25519 signatures 64 bytes;
4. the signature, verified by joserfc with the key's joserfc form (joserfc also
   decodes the payload, refused as ``malformed`` unless canonical base64url);
5. claims, parsed as strictly as the header: ``exp``/``nbf``/``iat`` with
   leeway, ``iss``, ``aud``, ``typ`` (RFC 8725 §3.11), required claims and an
   optional maximum lifetime.

JSON is parsed by bastion, not joserfc: RFC 7515 §5.2 / RFC 7519 §4 require
refusing duplicate member names, which ``json.loads`` silently collapses.

Every refusal is one :class:`InvalidTokenError` (code ``invalid_token``) whose
``reason`` says precisely why, for the audit log.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import orjson
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jws import deserialize_compact
from joserfc.util import urlsafe_b64decode

from bastion.crypto.errors import CryptoError
from bastion.crypto.jwa import P256_HALF_ORDER, P256_ORDER, pinned_registry
from bastion.crypto.keys import PublicKey, PublicKeySet, SigningKeyPair

__all__ = ["InvalidTokenError", "JWTVerifier", "VerifiedJWT", "sign_jwt"]

_ES256_SIG_BYTES: Final = 64
_ED25519_SIG_BYTES: Final = 64

#: Header members that would let the token choose its own key (RFC 8725 §3.10) or change
#: what is signed (RFC 7797 b64); bastion never honours them.
_FORBIDDEN_HEADERS: Final = ("jku", "x5u", "jwk", "x5c", "b64")

#: A whole compact JWS: three base64url segments, the signature possibly empty.
_JWS_RE: Final = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SEGMENT_RE: Final = re.compile(rb"[A-Za-z0-9_-]*")


class InvalidTokenError(CryptoError):
    """A token was refused. Outward it is always ``invalid_token`` (401); ``reason`` is precise.

    Reasons: ``malformed``, ``too_large``, ``jwe_not_accepted``, ``alg_not_allowed``,
    ``unknown_kid``, ``forbidden_header``, ``crit_not_supported``, ``bad_signature``,
    ``non_canonical_signature``,
    ``expired``, ``not_yet_valid``, ``issued_in_future``, ``lifetime_too_long``,
    ``wrong_issuer``, ``wrong_audience``, ``wrong_typ``, ``missing_claim``, ``invalid_claim``.
    """

    code = "invalid_token"
    status = 401
    title = "Invalid token"

    def __init__(self, reason: str, detail: str | None = None) -> None:
        # reason goes to the audit log only: it is deliberately not a problem member.
        super().__init__(detail or f"invalid token ({reason})")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedJWT:
    """A token whose signature and claims passed every check."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    kid: str


# -- signing -----------------------------------------------------------------


def sign_jwt(claims: Mapping[str, Any], key: SigningKeyPair, *, typ: str = "JWT") -> str:
    """Return a compact JWS of ``claims`` signed by ``key``; header ``{alg, kid, typ}``.

    Raises:
        TypeError: ``claims`` is not JSON-serialisable (e.g. non-string keys).
    """
    return key.sign_compact(orjson.dumps(dict(claims)), typ=typ)


# -- decoding ----------------------------------------------------------------


def _b64decode(segment: bytes, what: str) -> bytes:
    """Decode strict, canonical, unpadded base64url (joserfc's decoder), or refuse as malformed.

    The unused low bits of the last character must be zero, or two strings would
    decode alike; the alphabet was already checked.
    """
    try:
        return urlsafe_b64decode(segment)
    except ValueError:
        raise InvalidTokenError("malformed", f"the {what} is not canonical base64url") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DUPLICATE_CHECKER: Final = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
)


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse a JSON object strictly: RFC 8259 (orjson), no duplicate members at any depth."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidTokenError("malformed", f"the {what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("malformed", f"the {what} is not a JSON object")
    # RFC 7515 §5.2 / RFC 7519 §4: duplicate names must be refused (orjson keeps the last one,
    # another parser may keep the first). Compact JSON that re-serialises to the same bytes
    # cannot hold duplicates — the common case, for ~0.3 µs; anything else gets a full check.
    if orjson.dumps(value) != data:
        try:
            _DUPLICATE_CHECKER.decode(data.decode("utf-8"))
        except ValueError:
            raise InvalidTokenError("malformed", f"the {what} has duplicate members") from None
    return value


def _normalise_typ(value: str) -> str:
    # RFC 7515 §4.1.9 / RFC 8725 §3.11: media types compare case-insensitively and the
    # "application/" prefix may be omitted.
    lowered = value.lower()
    return lowered[12:] if lowered.startswith("application/") else lowered


def _check_canonical_signature(key: PublicKey, signature: bytes, *, allow_high_s: bool) -> None:
    """Refuse signature bytes that are not the one canonical form for the key's algorithm.

    joserfc would verify some of these (a high S) or return a bare False (a wrong
    length); the precise reason is for the audit log.
    """
    if key.alg == "ES256":
        # RFC 7518 §3.4: exactly r || s, 32 bytes each; DER and other lengths refused.
        if len(signature) != _ES256_SIG_BYTES:
            raise InvalidTokenError("bad_signature", "an ES256 signature must be 64 bytes")
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
        # r = 0 or s = 0 would verify against some broken implementations ("psychic signatures").
        if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
            raise InvalidTokenError("bad_signature", "ES256 signature values out of range")
        if s > P256_HALF_ORDER and not allow_high_s:
            # (r, n - s) verifies too: refuse the twin so a signed token has one form.
            raise InvalidTokenError("non_canonical_signature", "ES256 signature has a high S")
    elif key.alg == "EdDSA":
        if len(signature) != _ED25519_SIG_BYTES:
            raise InvalidTokenError("bad_signature", "an EdDSA signature must be 64 bytes")
    elif len(signature) != key.rsa_bytes:
        # RS256 / PS256: exactly as long as the modulus (RFC 8017 §8.2.2 step 1).
        raise InvalidTokenError("bad_signature", "RSA signature length is wrong")


def _verify_signature(key: PublicKey, token: bytes) -> bytes:
    """Verify ``token``'s signature with joserfc, pinned to the key's algorithm; return the payload.

    Raises:
        InvalidTokenError: ``bad_signature``, or ``malformed`` for a payload that is not
            canonical base64url.
    """
    try:
        return deserialize_compact(token, key.jose, registry=pinned_registry(key.alg)).payload
    except BadSignatureError:
        raise InvalidTokenError("bad_signature", "the signature does not verify") from None
    except JoseError:
        # Header, kid and algorithm were checked already: what is left is the payload.
        raise InvalidTokenError("malformed", "the payload is not canonical base64url") from None


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    # bool is an int subclass; true/false are not NumericDate values (RFC 7519 §2).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidTokenError("invalid_claim", f"claim {name!r} must be a NumericDate")
    return float(value)


def _string_set(value: str | Collection[str] | None, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    values = frozenset((value,)) if isinstance(value, str) else frozenset(value)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{what} must be a non-empty string or collection of strings")
    return values


class JWTVerifier:
    """Verifies compact JWS tokens against a trusted key set and fixed expectations.

    ``keys`` is a :class:`PublicKeySet` or a callable returning the current one
    (called once per token, so key rotation takes effect at once). ``issuer``
    and ``audience`` None mean "not checked here" — only for callers that check
    them themselves; ``typ`` None means the header ``typ`` is not checked.
    ``accept_expired`` skips the ``exp`` check only — for the one caller a spec lets
    take an expired token (an ``id_token_hint`` at logout); everything else still holds.

    Raises:
        ValueError: a negative ``leeway``, a non-positive ``max_size`` or
            ``max_lifetime``, or an empty issuer / audience / typ.
    """

    __slots__ = (
        "_accept_expired",
        "_allow_high_s",
        "_audience",
        "_issuer",
        "_key_source",
        "_keys",
        "_leeway",
        "_max_lifetime",
        "_max_size",
        "_require_kid",
        "_required",
        "_typ",
    )

    def __init__(
        self,
        keys: PublicKeySet | Callable[[], PublicKeySet],
        *,
        issuer: str | Collection[str] | None,
        audience: str | Collection[str] | None,
        typ: str | None,
        leeway: float = 30.0,
        max_size: int = 8192,
        required_claims: Collection[str] = ("exp", "iat"),
        max_lifetime: float | None = None,
        require_kid: bool = True,
        allow_high_s: bool = False,
        accept_expired: bool = False,
    ) -> None:
        if not (math.isfinite(leeway) and leeway >= 0):
            raise ValueError("leeway must be a finite number of seconds >= 0")
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        if max_lifetime is not None and not max_lifetime > 0:
            raise ValueError("max_lifetime must be positive")
        if typ is not None and not typ:
            raise ValueError("typ must be a non-empty string or None")
        self._keys = keys if isinstance(keys, PublicKeySet) else None
        self._key_source = None if isinstance(keys, PublicKeySet) else keys
        self._issuer = _string_set(issuer, "issuer")
        self._audience = _string_set(audience, "audience")
        self._typ = _normalise_typ(typ) if typ is not None else None
        self._leeway = float(leeway)
        self._max_size = max_size
        self._required = tuple(required_claims)
        self._max_lifetime = max_lifetime
        # kid is optional in RFC 7515; client libraries (Authlib among them) omit it in
        # client assertions. Without it, a key set holding exactly ONE key may still
        # serve — the key's fixed algorithm is checked all the same.
        self._require_kid = require_kid
        # Only for tokens signed elsewhere (client assertions, external issuers), whose
        # signers need not normalise S; bastion's own signatures are always low S.
        self._allow_high_s = allow_high_s
        self._accept_expired = accept_expired

    def verify(self, token: str | bytes, *, now: float | None = None) -> VerifiedJWT:
        """Verify ``token`` and return its header and claims.

        ``now`` (seconds since the epoch) defaults to the current time.

        Raises:
            InvalidTokenError: the token is refused; ``.reason`` says why.
        """
        raw = self._structure(token)
        header_end = raw.index(b".")
        signature_start = raw.rindex(b".")
        header = _json_object(_b64decode(raw[:header_end], "header"), "header")
        key = self._header_key(header)
        signature = _b64decode(raw[signature_start + 1 :], "signature")
        _check_canonical_signature(key, signature, allow_high_s=self._allow_high_s)
        claims = _json_object(_verify_signature(key, raw), "payload")
        self._check_claims(header, claims, time.time() if now is None else now)
        # Read-only views: verified results are cached and shared between requests.
        return VerifiedJWT(
            header=MappingProxyType(header), claims=MappingProxyType(claims), kid=key.kid
        )

    # -- steps ---------------------------------------------------------------

    def _structure(self, token: str | bytes) -> bytes:
        """Return the token as bytes if it is a size-bounded three-part base64url JWS."""
        if isinstance(token, str):
            # Size before anything else: an oversized token costs nothing more.
            if len(token) > self._max_size:
                raise InvalidTokenError("too_large", f"token longer than {self._max_size} bytes")
            try:
                raw = token.encode("ascii")
            except UnicodeEncodeError:
                raise InvalidTokenError(
                    "malformed", "token contains non-ASCII characters"
                ) from None
        elif isinstance(token, (bytes, bytearray)):
            if len(token) > self._max_size:
                raise InvalidTokenError("too_large", f"token longer than {self._max_size} bytes")
            raw = bytes(token)
        else:
            raise InvalidTokenError("malformed", "token must be text")
        if _JWS_RE.fullmatch(raw):
            return raw
        parts = raw.split(b".")
        if len(parts) == 5:
            raise InvalidTokenError("jwe_not_accepted", "an encrypted token (JWE) is not accepted")
        if len(parts) != 3:
            raise InvalidTokenError("malformed", "a JWS has exactly three dot-separated parts")
        if not all(_SEGMENT_RE.fullmatch(part) for part in parts):
            raise InvalidTokenError("malformed", "token parts must be base64url without padding")
        raise InvalidTokenError("malformed", "the token header or payload is empty")

    def _header_key(self, header: Mapping[str, Any]) -> PublicKey:
        """Check the header and return the trusted key it names, before any signature work."""
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidTokenError("malformed", "header 'alg' must be a string")
        if alg.lower() == "none":
            raise InvalidTokenError("alg_not_allowed", "unsigned tokens (alg none) are refused")
        if "enc" in header:
            raise InvalidTokenError("jwe_not_accepted", "an encrypted token (JWE) is not accepted")
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise InvalidTokenError("forbidden_header", f"header parameter {name!r} is refused")
        if "crit" in header:
            raise InvalidTokenError(
                "crit_not_supported", "no critical header extension is supported"
            )
        kid = header.get("kid")
        keys = self._keys if self._keys is not None else self._current_keys()
        if kid is None:
            if self._require_kid or len(keys) != 1:
                raise InvalidTokenError("unknown_kid", "token header has no 'kid'")
            kid = keys.kids()[0]
        if not isinstance(kid, str):
            raise InvalidTokenError("malformed", "header 'kid' must be a string")
        key = keys.get(kid)
        if key is None:
            raise InvalidTokenError("unknown_kid", "token signed by an unknown key")
        # The key fixes the algorithm; the header may only repeat it (RFC 8725 §3.1).
        if alg != key.alg:
            raise InvalidTokenError(
                "alg_not_allowed", f"algorithm {alg!r} not allowed for this key"
            )
        return key

    def _current_keys(self) -> PublicKeySet:
        assert self._key_source is not None  # one of _keys / _key_source is always set
        return self._key_source()

    def _check_claims(
        self, header: Mapping[str, Any], claims: Mapping[str, Any], now: float
    ) -> None:
        for name in self._required:
            if name not in claims:
                raise InvalidTokenError("missing_claim", f"claim {name!r} is required")
        leeway = self._leeway
        exp = _number(claims, "exp")
        nbf = _number(claims, "nbf")
        iat = _number(claims, "iat")
        # RFC 7519 §4.1.4: the token must not be accepted ON or after exp.
        if exp is not None and now >= exp + leeway and not self._accept_expired:
            raise InvalidTokenError("expired", "token has expired")
        if nbf is not None and now + leeway < nbf:
            raise InvalidTokenError("not_yet_valid", "token is not valid yet")
        if iat is not None and iat > now + leeway:
            raise InvalidTokenError("issued_in_future", "token issued in the future")
        limit = self._max_lifetime
        # Both bounds: a long-lived token is refused whether or not it admits it in iat.
        if (
            limit is not None
            and exp is not None
            and ((iat is not None and exp - iat > limit) or exp - now > limit + leeway)
        ):
            raise InvalidTokenError("lifetime_too_long", "token lifetime exceeds the maximum")
        if self._issuer is not None:
            iss = claims.get("iss")
            if iss is None:
                raise InvalidTokenError("missing_claim", "claim 'iss' is required")
            if not isinstance(iss, str) or iss not in self._issuer:
                raise InvalidTokenError("wrong_issuer", "token issued by an untrusted issuer")
        if self._audience is not None:
            self._check_audience(claims.get("aud"))
        if self._typ is not None:
            typ = header.get("typ")
            if not isinstance(typ, str) or _normalise_typ(typ) != self._typ:
                raise InvalidTokenError("wrong_typ", "token type is not the one expected here")

    def _check_audience(self, aud: Any) -> None:
        assert self._audience is not None
        if aud is None:
            raise InvalidTokenError("missing_claim", "claim 'aud' is required")
        if isinstance(aud, str):
            if aud in self._audience:
                return
        elif isinstance(aud, list):
            if not all(isinstance(item, str) for item in aud):
                raise InvalidTokenError("invalid_claim", "claim 'aud' must hold strings")
            if not self._audience.isdisjoint(aud):
                return
        else:
            raise InvalidTokenError("invalid_claim", "claim 'aud' must be a string or array")
        raise InvalidTokenError("wrong_audience", "token is not meant for this audience")
