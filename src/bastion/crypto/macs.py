"""Authentication tags for stored records, under keys derived from the master keyring.

A record that the database alone must not be able to forge (an audit
checkpoint) carries a tag::

    bmac1.<master key id>.<hex HMAC-SHA256 of the record's canonical bytes>

The HMAC key is derived from a master key with HKDF-SHA256 (RFC 5869), no
salt, ``info = "bastion/mac/v1/<purpose>"``: each purpose has its own key, and
none of them is the master key itself (which only wraps data keys,
``crypto/envelope.py``). The primary master key signs; every loaded key
verifies, so tags survive a master-key rotation until
:meth:`RecordAuthenticator.needs_resign` says to sign them again.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.crypto.envelope import Keyring
from bastion.crypto.errors import InvalidMacError

__all__ = ["RecordAuthenticator", "derive_key"]

_TAG_VERSION: Final = "bmac1"
_TAG: Final = re.compile(r"bmac1\.([0-9a-f]{16})\.([0-9a-f]{64})")
_PURPOSE: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def derive_key(keyring: Keyring, purpose: str, *, key_id: str | None = None) -> bytes:
    """A 256-bit key for ``purpose`` derived (HKDF-SHA256) from a master key of ``keyring``.

    ``key_id`` picks the master key (default: the primary). Raises ValueError for
    a purpose that is not a short lower-case label, KeyError for an unknown key id.
    """
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError(f"a key purpose is a short lower-case label, not {purpose!r}")
    master = keyring.primary if key_id is None else {k.key_id: k for k in keyring}[key_id]
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"bastion/mac/v1/{purpose}".encode("ascii"),
    )
    return hkdf.derive(master.material)


class RecordAuthenticator:
    """Signs and verifies ``bmac1`` tags for one ``purpose`` (see the module docstring)."""

    __slots__ = ("_keys", "_primary", "purpose")

    def __init__(self, keyring: Keyring, purpose: str) -> None:
        self.purpose = purpose
        self._primary = keyring.primary.key_id
        self._keys = {
            key.key_id: derive_key(keyring, purpose, key_id=key.key_id) for key in keyring
        }

    def __repr__(self) -> str:
        return f"RecordAuthenticator(purpose={self.purpose!r}, key_ids={tuple(self._keys)!r})"

    def sign(self, data: bytes) -> str:
        """The tag of ``data`` under the primary master key's derived key."""
        digest = hmac.new(self._keys[self._primary], data, hashlib.sha256).hexdigest()
        return f"{_TAG_VERSION}.{self._primary}.{digest}"

    def verify(self, tag: str | None, data: bytes) -> None:
        """Return if ``tag`` authenticates ``data``; compare in constant time.

        Raises:
            InvalidMacError: ``reason`` ``missing`` (no tag), ``malformed``,
                ``unknown_key`` (signed under a master key that is not loaded) or
                ``mismatch`` (forged, or the record was altered).
        """
        if tag is None or tag == "":
            raise InvalidMacError("missing", "the record has no authentication tag")
        match = _TAG.fullmatch(tag) if isinstance(tag, str) else None
        if match is None:
            raise InvalidMacError("malformed", "the authentication tag is malformed")
        key = self._keys.get(match[1])
        if key is None:
            raise InvalidMacError(
                "unknown_key",
                f"the authentication tag was made under master key {match[1]}, which is not loaded",
            )
        expected = hmac.new(key, data, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, match[2]):
            raise InvalidMacError(
                "mismatch", "the authentication tag does not match: forged, or the record altered"
            )

    def needs_resign(self, tag: str) -> bool:
        """Whether a valid ``tag`` was made under a key other than the primary."""
        match = _TAG.fullmatch(tag)
        return match is None or match[1] != self._primary
