"""Small digest and token helpers shared by the rest of bastion.

They live here so that every constant-time comparison and every random token
in the code base goes through one reviewed place.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: Fewer random bytes than this is guessable for a bearer secret.
_MIN_TOKEN_BYTES = 16


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hexadecimal SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _as_bytes(value: bytes | str) -> bytes:
    # hmac.compare_digest only accepts ASCII str; encoding lets any text compare.
    return value.encode("utf-8") if isinstance(value, str) else value


def hmac_sha256_hex(key: bytes | str, data: bytes) -> str:
    """Return the lower-case hex HMAC-SHA256 of ``data`` under ``key`` (UTF-8 when ``str``)."""
    return hmac.new(_as_bytes(key), data, hashlib.sha256).hexdigest()


def constant_time_equals(a: bytes | str, b: bytes | str) -> bool:
    """Compare two secrets in time independent of where they differ.

    ``str`` arguments are compared as their UTF-8 encoding, so ``"x"`` equals
    ``b"x"``. Timing still reveals the lengths, as with any such comparison.
    """
    return hmac.compare_digest(_as_bytes(a), _as_bytes(b))


def random_token(nbytes: int = 32) -> str:
    """Return ``nbytes`` random bytes from the OS CSPRNG as unpadded base64url text.

    Raises:
        ValueError: ``nbytes`` is below 16 (too few to be unguessable).
    """
    if nbytes < _MIN_TOKEN_BYTES:
        raise ValueError(f"random_token needs at least {_MIN_TOKEN_BYTES} bytes, got {nbytes}")
    return secrets.token_urlsafe(nbytes)
