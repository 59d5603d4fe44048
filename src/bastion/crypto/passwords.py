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

Where it runs: the ``*_async`` methods run argon2 in one pool of threads, as many as the
process may use cores (:data:`HASHING_THREADS`), shared by every hasher. More at once
would not finish sooner — argon2 is CPU-bound — but would time-slice ``m`` MiB each
through the caches (measured on 1 core: 34 logins per core-second one at a time, 30 with
four at once, ``bench/login``) and hold ``m`` MiB each: a flood of logins must queue, not
multiply the memory argon2 holds.
"""

from __future__ import annotations

import asyncio
import base64
import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.crypto.errors import PasswordMismatchError

__all__ = [
    "HASHING_THREADS",
    "Argon2Parameters",
    "PasswordHasher",
    "PasswordMismatchError",
    "VerifiedPassword",
    "normalize_password",
]


#: How many argon2 computations run at once in this process: one per core it may use.
HASHING_THREADS: Final = max(1, len(os.sched_getaffinity(0)))
_POOL: Final = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="argon2")


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

    async def hash_async(self, password: str) -> str:
        """:meth:`hash` in the hashing pool (the event loop goes on meanwhile)."""
        return await asyncio.get_running_loop().run_in_executor(_POOL, self.hash, password)

    async def verify_async(self, encoded: str, password: str) -> VerifiedPassword:
        """:meth:`verify` in the hashing pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_POOL, self.verify, encoded, password)

    async def verify_dummy_async(self, password: str) -> None:
        """:meth:`verify_dummy` in the hashing pool."""
        await asyncio.get_running_loop().run_in_executor(_POOL, self.verify_dummy, password)


def _dummy_hash(parameters: Argon2Parameters) -> str:
    """A well-formed argon2id hash under ``parameters`` that no password matches.

    Random salt and random digest, written without hashing anything: verifying
    against it computes one full argon2id under ``parameters`` (what verifying a
    real user's password costs) and then finds a mismatch.
    """
    salt, digest = (base64.b64encode(os.urandom(n)).rstrip(b"=").decode("ascii") for n in (16, 32))
    p = parameters
    return f"$argon2id$v=19$m={p.memory_kib},t={p.time_cost},p={p.parallelism}${salt}${digest}"
