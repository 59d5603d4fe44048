"""The JWS algorithms bastion signs and verifies with (RFC 7518 §3, RFC 8037 §3.1), from joserfc.

bastion uses exactly four: ES256 (P-256), RS256, PS256 and EdDSA (Ed25519 only —
:mod:`bastion.crypto.keys` refuses Ed448). joserfc implements them;
this module only decides which, and how they are looked up:

- :data:`ALGORITHMS` — one joserfc algorithm object per name. ES256 signing is
  normalised to the canonical low-S form (``s <= n/2``): OpenSSL returns a
  high S half the time, and bastion's verifier refuses the high-S twin of a
  signature so that a token has exactly one valid encoding.
- :func:`pinned_registry` — a joserfc :class:`~joserfc.jws.JWSRegistry` that
  knows ONE algorithm, the key's own: whatever a token's header says, joserfc
  cannot be made to verify with another (RFC 8725 §3.1). Header policy is
  :mod:`bastion.crypto.jwt`'s, which runs before joserfc sees a token.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwa import (
    EdDSAAlgorithm,
    ESAlgorithm,
    JWSAlgModel,
    RSAAlgorithm,
    RSAPSSAlgorithm,
)
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry
from joserfc.registry import Header

__all__ = ["ALGORITHMS", "P256_HALF_ORDER", "P256_ORDER", "pinned_registry"]

#: The order of the P-256 group (FIPS 186-4 D.1.2.3); ECDSA r and s lie in [1, n-1].
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: Canonical ECDSA signatures have ``s <= n/2`` (the other half is the malleable twin).
P256_HALF_ORDER: Final = P256_ORDER // 2
_P256_SCALAR_BYTES: Final = 32


class _LowSES256(ESAlgorithm):
    """joserfc's ES256, signing in the canonical low-S form (verification unchanged)."""

    def __init__(self) -> None:
        super().__init__("ES256", "P-256", 256, recommended=True)

    def sign(self, msg: bytes, key: ECKey) -> bytes:
        signature = super().sign(msg, key)  # raw r || s, 32 bytes each (RFC 7518 §3.4)
        s = int.from_bytes(signature[_P256_SCALAR_BYTES:], "big")
        if s <= P256_HALF_ORDER:
            return signature
        # (r, n - s) is the same signature's other form: keep the one verifiers accept.
        low = (P256_ORDER - s).to_bytes(_P256_SCALAR_BYTES, "big")
        return signature[:_P256_SCALAR_BYTES] + low


#: The algorithms bastion signs and verifies with, by JWS ``alg`` name.
ALGORITHMS: Final[Mapping[str, JWSAlgModel]] = MappingProxyType(
    {
        "ES256": _LowSES256(),
        "RS256": RSAAlgorithm(256),
        "PS256": RSAPSSAlgorithm(256),
        "EdDSA": EdDSAAlgorithm(),
    }
)


class _PinnedRegistry(JWSRegistry):
    """A joserfc JWS registry that knows exactly one algorithm."""

    def __init__(self, algorithm: JWSAlgModel) -> None:
        super().__init__(algorithms=(algorithm.name,), strict_check_header=False)
        self._algorithm = algorithm
        # The verifier's max_size is the one cap, checked before joserfc sees a token;
        # joserfc's per-part caps (512-byte header) would refuse tokens bastion accepts.
        self.max_header_length = sys.maxsize
        self.max_payload_length = sys.maxsize
        self.max_signature_length = sys.maxsize

    def get_alg(self, name: str) -> JWSAlgModel:
        # Not JWSRegistry.get_alg: that one warns on every "EdDSA" token (RFC 9864 deprecates
        # the name because it may mean Ed448 too); here it only ever means Ed25519.
        if name != self._algorithm.name:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self._algorithm

    def check_header(self, header: Header) -> None:
        """Nothing: bastion's header policy (``jwt.py``) ran first and is stricter.

        It refuses ``crit``, ``b64`` and every key-bearing member outright; joserfc's
        member type checks would only turn a refusal's reason (``wrong_typ`` for a
        numeric ``typ``) into another, or refuse an unchecked ``cty`` bastion ignores.
        """


_REGISTRIES: Final = {name: _PinnedRegistry(algorithm) for name, algorithm in ALGORITHMS.items()}


def pinned_registry(alg: str) -> JWSRegistry:
    """Return the joserfc registry that allows only ``alg`` (one of :data:`ALGORITHMS`).

    Raises:
        KeyError: ``alg`` is not one of bastion's algorithms.
    """
    return _REGISTRIES[alg]
