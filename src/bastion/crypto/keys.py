"""Asymmetric signing keys and the public key sets JWT verifiers trust.

- :class:`SigningKeyPair` — one of bastion's own token-signing keys (private
  part in memory only; :meth:`SigningKeyPair.private_bytes` is what the caller
  seals with the master keyring before storing it).
- :class:`PublicKey` / :class:`PublicKeySet` — verification keys by ``kid``,
  built from bastion's own keys or from a trusted issuer's JWKS (RFC 7517).

Supported algorithms (RFC 7518 §3, RFC 8037): ES256 (P-256), RS256 and PS256
(RSA >= 2048 bits), EdDSA (Ed25519 only). Every key is bound to exactly one
algorithm: a verifier never takes the algorithm from a token.

Key ids of generated keys are RFC 7638 JWK thumbprints (SHA-256, base64url).

JWK import and export, thumbprints and the signatures themselves are joserfc's
(:mod:`bastion.crypto.jwa` picks the algorithms); what a key set may hold — public
keys only, one algorithm per key, P-256 / RSA >= 2048 bits / Ed25519, canonical
base64url members, a ``kid`` — is decided here, before joserfc imports a key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeAlias, cast, get_args

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc.jwk import ECKey, KeyParameters, OKPKey, RSAKey, thumbprint
from joserfc.jws import serialize_compact
from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

from bastion.crypto.errors import CryptoError
from bastion.crypto.jwa import ALGORITHMS, pinned_registry

__all__ = [
    "DEFAULT_ALGS",
    "InvalidKeyError",
    "PublicKey",
    "PublicKeySet",
    "SigningAlgorithm",
    "SigningKeyPair",
    "UnusableKeyError",
    "jwk_thumbprint",
]

SigningAlgorithm: TypeAlias = Literal["ES256", "RS256", "PS256", "EdDSA"]

#: Every algorithm bastion can verify; a key set may be restricted further.
DEFAULT_ALGS: Final[tuple[SigningAlgorithm, ...]] = get_args(SigningAlgorithm)

#: RFC 7518 §3.3 / NIST SP 800-131A: RSA keys below this size are refused.
MIN_RSA_BITS: Final = 2048
#: The largest RSA key bastion generates: the native gateway signs with ring, whose RSA
#: signing keys are 2048 to 4096 bits (a larger key stored by an older version still
#: loads and verifies; while it is the current key, routes sending the identity assertion
#: answer 503 ``assertion_unavailable`` until it is rotated).
MAX_RSA_BITS: Final = 4096
#: A JWKS with more keys than this is not a real key set (bounds work per refresh).
MAX_JWKS_KEYS: Final = 100
#: A kid longer than this is refused when loading a key set.
MAX_KID_LENGTH: Final = 256

_P256_COORD_BYTES: Final = 32
_ED25519_KEY_BYTES: Final = 32
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
#: JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

_PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_PublicKeyObject: TypeAlias = (
    ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
)
#: A joserfc key of one of the three key types bastion uses.
_JoseKey: TypeAlias = ECKey | RSAKey | OKPKey


class InvalidKeyError(CryptoError):
    """A key or key set is unusable: malformed, private, symmetric, too weak or ambiguous."""

    code = "invalid_key"
    title = "Invalid key"


class UnusableKeyError(InvalidKeyError):
    """A well-formed public key that is not for verifying our tokens.

    It is meant for encryption, or uses an algorithm, curve or key type that
    bastion does not verify (or the caller does not allow). A JWK Set may
    legitimately hold such keys next to signing keys: :meth:`PublicKeySet.from_jwks`
    skips them instead of refusing the whole set.
    """


# -- base64url / JWK members ------------------------------------------------


def b64url_encode(data: bytes) -> str:
    """Return unpadded base64url text (RFC 7515 §2)."""
    return urlsafe_b64encode(data).decode("ascii")


def _b64url_decode_member(jwk: Mapping[str, Any], name: str, kid: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value or not _B64URL_RE.fullmatch(value):
        raise InvalidKeyError(f"JWK {kid!r}: member {name!r} must be non-empty base64url text")
    try:
        # joserfc's decoder is strict: no padding, and the unused low bits of the last
        # character must be zero, so one value has one spelling.
        return urlsafe_b64decode(value.encode("ascii"))
    except ValueError:
        raise InvalidKeyError(f"JWK {kid!r}: member {name!r} is not canonical base64url") from None


def _jose_key(
    key: _PrivateKey | _PublicKeyObject, parameters: KeyParameters | None = None
) -> _JoseKey:
    """Wrap a ``cryptography`` key as the joserfc key of its type, with JWK ``parameters``."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return ECKey.import_key(key, parameters)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return RSAKey.import_key(key, parameters)
    return OKPKey.import_key(key, parameters)


#: RFC 7638 §3.2: the required members hashed for each key type.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a public JWK as base64url text.

    Raises:
        InvalidKeyError: the key type is not EC, RSA or OKP, or a required member is missing.
    """
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise InvalidKeyError(f"cannot compute a thumbprint for key type {jwk.get('kty')!r}")
    required: dict[str, str] = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise InvalidKeyError(f"cannot compute a thumbprint: member {name!r} is missing")
        required[name] = value
    return thumbprint(required)  # RFC 7638 §3.3: sorted, no whitespace, SHA-256


def _check_private_key(key: object, alg: SigningAlgorithm) -> _PrivateKey:
    if alg == "ES256":
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return key
        raise InvalidKeyError("an ES256 key must be an EC P-256 private key")
    if alg in ("RS256", "PS256"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise InvalidKeyError(f"an {alg} key must be an RSA private key")
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKeyError(
                f"RSA key of {key.key_size} bits refused: at least {MIN_RSA_BITS} bits are required"
            )
        return key
    if alg == "EdDSA":
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key
        raise InvalidKeyError("an EdDSA key must be an Ed25519 private key")
    raise InvalidKeyError(f"unsupported signing algorithm {alg!r}; use one of {DEFAULT_ALGS}")


class SigningKeyPair:
    """One of bastion's token-signing keys, bound to one algorithm.

    Immutable. ``repr``/``str`` show only ``kid`` and ``alg``; the private key
    leaves this object only through :meth:`private_bytes` (sealed storage) and
    :meth:`private_der` (the native core's assertion signer).
    """

    __slots__ = ("_jose", "_private", "_public", "alg", "kid")

    kid: str
    alg: SigningAlgorithm
    _private: _PrivateKey
    _jose: _JoseKey
    _public: PublicKey

    def __init__(self, private_key: _PrivateKey, *, kid: str, alg: SigningAlgorithm) -> None:
        """Bind ``private_key`` to ``kid`` and ``alg``.

        Raises:
            InvalidKeyError: the key does not fit ``alg`` (curve, type, RSA size), or
                ``kid`` is empty.
        """
        checked = _check_private_key(private_key, alg)
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise InvalidKeyError(f"a key id must be 1..{MAX_KID_LENGTH} characters")
        object.__setattr__(self, "_private", checked)
        object.__setattr__(
            self, "_jose", _jose_key(checked, {"kid": kid, "alg": alg, "use": "sig"})
        )
        object.__setattr__(self, "kid", kid)
        object.__setattr__(self, "alg", alg)
        object.__setattr__(self, "_public", PublicKey(checked.public_key(), kid=kid, alg=alg))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"SigningKeyPair is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return f"SigningKeyPair(kid={self.kid!r}, alg={self.alg!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        # Pickling would copy the private key out of band (caches, multiprocessing).
        raise TypeError("SigningKeyPair cannot be pickled; store private_bytes() sealed instead")

    @classmethod
    def generate(cls, alg: SigningAlgorithm, *, rsa_key_size: int = 3072) -> SigningKeyPair:
        """Generate a new key for ``alg``; its ``kid`` is the RFC 7638 thumbprint.

        Raises:
            InvalidKeyError: ``alg`` is not supported, or ``rsa_key_size`` is not 2048 to
                4096 bits.
        """
        private: _PrivateKey
        if alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg in ("RS256", "PS256"):
            if rsa_key_size < MIN_RSA_BITS:
                raise InvalidKeyError(
                    f"RSA key size {rsa_key_size} refused: "
                    f"at least {MIN_RSA_BITS} bits are required"
                )
            if rsa_key_size > MAX_RSA_BITS:
                raise InvalidKeyError(
                    f"RSA key size {rsa_key_size} refused: at most {MAX_RSA_BITS} bits "
                    "(the native gateway cannot sign with a larger key)"
                )
            private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_key_size)
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise InvalidKeyError(
                f"unsupported signing algorithm {alg!r}; use one of {DEFAULT_ALGS}"
            )
        return cls(private, kid=_jose_key(private.public_key()).thumbprint(), alg=alg)

    def private_bytes(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM (seal it before storing it)."""
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def private_der(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 DER (for the native signer; not stored)."""
        return self._private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_private_bytes(cls, data: bytes, *, kid: str, alg: SigningAlgorithm) -> SigningKeyPair:
        """Load a key written by :meth:`private_bytes` (PKCS#8 PEM) and bind it to ``kid``/``alg``.

        Raises:
            InvalidKeyError: ``data`` is not an unencrypted PEM private key, or the key
                does not fit ``alg`` (type, curve, RSA size).
        """
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # The message never includes the data: it is a private key.
            raise InvalidKeyError(
                f"key {kid!r}: stored private key is not an unencrypted PEM private key"
            ) from None
        return cls(_check_private_key(private, alg), kid=kid, alg=alg)

    @property
    def public_key(self) -> PublicKey:
        """The verification half of this key."""
        return self._public

    def public_jwk(self) -> dict[str, Any]:
        """Return the public JWK: public members plus ``kid``, ``alg`` and ``use: "sig"``."""
        return self._public.jwk()

    def sign(self, signing_input: bytes) -> bytes:
        """Sign ``signing_input`` as a JWS signature of this key's algorithm (RFC 7518 §3).

        ES256 signatures are the raw 64-byte ``r || s`` form, not DER, with a low S.
        """
        return ALGORITHMS[self.alg].sign(signing_input, self._jose)

    def sign_compact(self, payload: bytes, *, typ: str) -> str:
        """Return the JWS Compact Serialization (RFC 7515 §7.1) of ``payload`` signed by this key.

        The protected header is exactly ``{alg, kid, typ}``: nothing else (no ``crit``,
        no ``b64``) can be put in it, since joserfc's header checks are bastion's to make
        (:mod:`bastion.crypto.jwa`).
        """
        header = {"alg": self.alg, "kid": self.kid, "typ": typ}
        return serialize_compact(header, payload, self._jose, registry=pinned_registry(self.alg))


class PublicKey:
    """A verification key bound to exactly one algorithm, identified by ``kid``.

    ``key`` is the underlying ``cryptography`` public key object and ``jose``
    the same key as joserfc's, carrying ``kid``, ``alg`` and ``use: "sig"`` (so
    joserfc, too, refuses it for any other algorithm); only
    :mod:`bastion.crypto.jwt` uses them.
    """

    __slots__ = ("alg", "jose", "key", "kid", "rsa_bytes")

    kid: str
    alg: SigningAlgorithm
    key: _PublicKeyObject
    jose: _JoseKey
    rsa_bytes: int

    def __init__(self, key: _PublicKeyObject, *, kid: str, alg: SigningAlgorithm) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "jose", _jose_key(key, {"kid": kid, "alg": alg, "use": "sig"}))
        object.__setattr__(self, "kid", kid)
        object.__setattr__(self, "alg", alg)
        # An RSA signature is exactly as long as the modulus (RFC 8017 §8.2.2 step 1).
        size = (key.key_size + 7) // 8 if isinstance(key, rsa.RSAPublicKey) else 0
        object.__setattr__(self, "rsa_bytes", size)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"PublicKey is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return f"PublicKey(kid={self.kid!r}, alg={self.alg!r})"

    def jwk(self) -> dict[str, Any]:
        """Return the public JWK with ``kid``, ``alg`` and ``use: "sig"`` (a fresh dict)."""
        members: dict[str, Any] = dict(self.jose.as_dict(private=False))
        # joserfc puts kty last; first reads better in a published JWK Set.
        return {"kty": members.pop("kty"), **members}

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, Any], *, allowed_algs: Collection[str] = DEFAULT_ALGS
    ) -> PublicKey:
        """Build a verification key from a public JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037).

        The JWK must carry ``kid``; ``alg`` is required for RSA keys (RS256 and
        PS256 share a key type) and inferred from the curve for EC P-256
        (ES256) and OKP Ed25519 (EdDSA) when absent.

        Raises:
            UnusableKeyError: the key is not for verification here: ``use`` is not
                "sig", ``key_ops`` lacks "verify", or its key type, curve or
                algorithm is unsupported or outside ``allowed_algs`` (an RSA key
                without ``alg`` included).
            InvalidKeyError: the JWK is malformed, holds private or symmetric
                material, has no usable ``kid``, names an algorithm that does not fit
                its key, or is an RSA key under 2048 bits.
        """
        if not isinstance(jwk, Mapping):
            raise InvalidKeyError("a JWK must be a JSON object")
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
            raise InvalidKeyError(f"every JWK needs a 'kid' of 1..{MAX_KID_LENGTH} characters")
        private = sorted(_PRIVATE_MEMBERS.intersection(jwk))
        if private:
            raise InvalidKeyError(
                f"JWK {kid!r} holds private or symmetric key members {private}: "
                "publish only public keys"
            )
        kty = jwk.get("kty")
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise UnusableKeyError(f"JWK {kid!r} has use {use!r}; a verification key needs 'sig'")
        key_ops = jwk.get("key_ops")
        if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
            raise UnusableKeyError(f"JWK {kid!r}: key_ops does not allow 'verify'")
        alg = jwk.get("alg")
        if alg is not None and not isinstance(alg, str):
            raise InvalidKeyError(f"JWK {kid!r}: 'alg' must be a string")
        key: _PublicKeyObject
        if kty == "EC":
            if jwk.get("crv") != "P-256":
                raise UnusableKeyError(f"JWK {kid!r}: only EC keys on P-256 are supported")
            if alg not in (None, "ES256"):
                raise InvalidKeyError(f"JWK {kid!r}: algorithm {alg!r} does not fit a P-256 key")
            alg = "ES256"
            x = _b64url_decode_member(jwk, "x", kid)
            y = _b64url_decode_member(jwk, "y", kid)
            if len(x) != _P256_COORD_BYTES or len(y) != _P256_COORD_BYTES:
                raise InvalidKeyError(f"JWK {kid!r}: P-256 coordinates must be 32 bytes each")
            try:
                key = ECKey.import_key(
                    {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]}
                ).public_key
            except ValueError:
                raise InvalidKeyError(f"JWK {kid!r}: the point is not on the P-256 curve") from None
        elif kty == "RSA":
            if alg not in ("RS256", "PS256"):
                raise UnusableKeyError(
                    f"JWK {kid!r}: an RSA key must name its algorithm ('alg': RS256 or PS256)"
                )
            n = int.from_bytes(_b64url_decode_member(jwk, "n", kid), "big")
            _b64url_decode_member(jwk, "e", kid)  # canonical base64url, like n
            if n.bit_length() < MIN_RSA_BITS:
                raise InvalidKeyError(
                    f"JWK {kid!r}: RSA key of {n.bit_length()} bits refused: "
                    f"at least {MIN_RSA_BITS} bits are required"
                )
            try:
                key = RSAKey.import_key({"kty": "RSA", "n": jwk["n"], "e": jwk["e"]}).public_key
            except ValueError:
                raise InvalidKeyError(f"JWK {kid!r}: invalid RSA public key") from None
        elif kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise UnusableKeyError(f"JWK {kid!r}: only OKP keys on Ed25519 are supported")
            if alg not in (None, "EdDSA", "Ed25519"):
                raise InvalidKeyError(f"JWK {kid!r}: algorithm {alg!r} does not fit an Ed25519 key")
            alg = "EdDSA"
            x = _b64url_decode_member(jwk, "x", kid)
            if len(x) != _ED25519_KEY_BYTES:
                raise InvalidKeyError(f"JWK {kid!r}: an Ed25519 key must be 32 bytes")
            okp = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": jwk["x"]})
            key = cast(ed25519.Ed25519PublicKey, okp.public_key)  # crv Ed25519, just above
        elif kty == "oct":
            raise InvalidKeyError(f"JWK {kid!r}: symmetric ('oct') keys are refused")
        else:
            raise UnusableKeyError(f"JWK {kid!r}: unsupported key type {kty!r}")
        if alg not in allowed_algs:
            raise UnusableKeyError(f"JWK {kid!r}: algorithm {alg!r} is not allowed here")
        checked_alg: SigningAlgorithm = alg  # type: ignore[assignment]  # narrowed above
        return cls(key, kid=kid, alg=checked_alg)


class PublicKeySet:
    """The keys a verifier trusts, by ``kid`` (unique). Immutable.

    Raises:
        InvalidKeyError: two keys share a ``kid``.
    """

    __slots__ = ("_keys", "skipped")

    #: ``(kid, why)`` of the JWKs :meth:`from_jwks` left out as not usable for verification.
    skipped: tuple[tuple[str, str], ...]

    def __init__(
        self, keys: Iterable[PublicKey] = (), *, skipped: Iterable[tuple[str, str]] = ()
    ) -> None:
        by_kid: dict[str, PublicKey] = {}
        for key in keys:
            if key.kid in by_kid:
                raise InvalidKeyError(f"key id {key.kid!r} appears twice in the key set")
            by_kid[key.kid] = key
        self._keys = by_kid
        self.skipped = tuple(skipped)

    def __repr__(self) -> str:
        return f"PublicKeySet(kids={self.kids()!r})"

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys.values())

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    @classmethod
    def from_jwks(
        cls, jwks: Mapping[str, Any], *, allowed_algs: Collection[str] = DEFAULT_ALGS
    ) -> PublicKeySet:
        """Build a key set from a JWK Set document ``{"keys": [...]}`` (RFC 7517 §5).

        Every key is checked as by :meth:`PublicKey.from_jwk`. Keys that are
        merely not for us (:class:`UnusableKeyError`: encryption keys, other
        algorithms or curves) are skipped and listed in :attr:`skipped`; any
        other bad key refuses the whole set, so a broken or tampered JWKS is
        noticed rather than half-trusted.

        Raises:
            InvalidKeyError: the document is not a JWK Set, holds more than 100
                keys, a key is refused, or two keys share a ``kid``.
        """
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(keys, list):
            raise InvalidKeyError("a JWK Set must be an object with a 'keys' array")
        if len(keys) > MAX_JWKS_KEYS:
            raise InvalidKeyError(f"a JWK Set with more than {MAX_JWKS_KEYS} keys is refused")
        usable: list[PublicKey] = []
        skipped: list[tuple[str, str]] = []
        for jwk in keys:
            try:
                usable.append(PublicKey.from_jwk(jwk, allowed_algs=allowed_algs))
            except UnusableKeyError as error:
                skipped.append((str(jwk.get("kid")), error.detail))
        return cls(usable, skipped=skipped)

    def get(self, kid: str) -> PublicKey | None:
        """Return the key with this ``kid``, or None."""
        return self._keys.get(kid)

    def kids(self) -> tuple[str, ...]:
        """The key ids, in insertion order."""
        return tuple(self._keys)

    def jwks(self) -> dict[str, Any]:
        """Return the JWK Set document ``{"keys": [...]}`` of the public keys."""
        return {"keys": [key.jwk() for key in self._keys.values()]}
