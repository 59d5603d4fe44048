"""Password hashing: argon2id, verified in constant time, rehashed when the parameters rise.

The parameters default to the second of OWASP's argon2id configurations (Password
Storage Cheat Sheet: m = 19 MiB, t = 2, p = 1); the settings refuse anything weaker
than all five of them (``settings/users.py``, ``users.password.argon2``). A hash
records its own parameters, so a hash made under weaker ones still verifies and
:meth:`PasswordHasher.verify` says a rehash is due (``check_needs_rehash``): the
caller stores a new hash at the next login.

What is hashed is the password's UTF-8 bytes after NFC normalisation — never
truncated (argon2 has no length limit, unlike bcrypt's 72 bytes) and never
case-folded; NFC only makes the composed and decomposed spellings of one
character (``é`` typed on different keyboards) the same password, it removes
nothing.

Unknown users cost the same as known ones: :meth:`PasswordHasher.verify_dummy`
runs one real verify against a hash made with the current parameters and then
fails like a wrong password.
"""

from __future__ import annotations

import base64
import os
import unicodedata
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.crypto.errors import PasswordMismatchError

__all__ = [
    "Argon2Parameters",
    "PasswordHasher",
    "PasswordMismatchError",
    "VerifiedPassword",
    "normalize_password",
]


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    """argon2id cost parameters: memory in KiB, passes, lanes (default: OWASP's m=19 MiB,
    t=2, p=1)."""

    memory_kib: int = 19_456
    time_cost: int = 2
    parallelism: int = 1


@dataclass(frozen=True, slots=True)
class VerifiedPassword:
    """A password that matched; ``needs_rehash``: store a new hash under today's parameters."""

    needs_rehash: bool


def normalize_password(password: str) -> str:
    """``password`` in NFC: canonically equivalent spellings become one, nothing is removed."""
    return unicodedata.normalize("NFC", password)


def _encode(password: str) -> bytes:
    # surrogatepass: a lone surrogate (which the policy never lets be set) still hashes,
    # to something no stored password matches, rather than raising mid-login.
    return normalize_password(password).encode("utf-8", "surrogatepass")


class PasswordHasher:
    """argon2id hashing and verification under one set of :class:`Argon2Parameters`."""

    def __init__(self, parameters: Argon2Parameters | None = None) -> None:
        self.parameters = parameters or Argon2Parameters()
        self._argon2 = argon2.PasswordHasher(
            time_cost=self.parameters.time_cost,
            memory_cost=self.parameters.memory_kib,
            parallelism=self.parameters.parallelism,
            hash_len=32,
            salt_len=16,
            type=argon2.Type.ID,
        )
        self._dummy = _dummy_hash(self.parameters)

    def hash(self, password: str) -> str:
        """The PHC-format argon2id hash of ``password`` (a fresh random salt each time)."""
        return self._argon2.hash(_encode(password))

    def verify(self, encoded: str, password: str) -> VerifiedPassword:
        """Check ``password`` against the stored ``encoded`` hash (constant time in argon2).

        Raises:
            PasswordMismatchError: it does not match, or ``encoded`` is not an argon2 hash.
        """
        try:
            self._argon2.verify(encoded, _encode(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            raise PasswordMismatchError("the password does not match") from None
        return VerifiedPassword(needs_rehash=self._argon2.check_needs_rehash(encoded))

    def verify_dummy(self, password: str) -> None:
        """Spend what one :meth:`verify` costs, then fail: for a user who does not exist.

        Raises:
            PasswordMismatchError: always.
        """
        self.verify(self._dummy, password)
        # A random 32-byte digest matches no password (2**-256); refuse even so.
        raise PasswordMismatchError("the password does not match")  # pragma: no cover


def _dummy_hash(parameters: Argon2Parameters) -> str:
    """A well-formed argon2id hash under ``parameters`` that no password matches.

    Random salt and random digest, written without hashing anything: verifying
    against it computes one full argon2id under ``parameters`` (what verifying a
    real user's password costs) and then finds a mismatch.
    """
    salt, digest = (base64.b64encode(os.urandom(n)).rstrip(b"=").decode("ascii") for n in (16, 32))
    p = parameters
    return f"$argon2id$v=19$m={p.memory_kib},t={p.time_cost},p={p.parallelism}${salt}${digest}"
