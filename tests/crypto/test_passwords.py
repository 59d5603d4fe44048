"""argon2id password hashing: OWASP parameters, no truncation, NFC, rehash, the dummy hash."""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata

import argon2
import pytest

from _support.argon2_calls import count_verifies
from bastion.crypto.errors import PasswordMismatchError
from bastion.crypto.passwords import (
    HASHING_THREADS,
    Argon2Parameters,
    PasswordHasher,
    VerifiedPassword,
    normalize_password,
)


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher()


def test_default_parameters_are_owasps(hasher: PasswordHasher) -> None:
    assert hasher.parameters == Argon2Parameters(memory_kib=19_456, time_cost=2, parallelism=1)
    encoded = hasher.hash("correct horse battery")
    assert encoded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    params = argon2.extract_parameters(encoded)
    assert (params.type, params.salt_len, params.hash_len) == (argon2.Type.ID, 16, 32)


def test_verify_matches_and_refuses(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("correct horse battery")
    assert hasher.verify(encoded, "correct horse battery").needs_rehash is False
    with pytest.raises(PasswordMismatchError) as info:
        hasher.verify(encoded, "correct horse batterY")
    assert (info.value.code, info.value.status) == ("password_mismatch", 401)


def test_each_hash_has_its_own_salt(hasher: PasswordHasher) -> None:
    assert hasher.hash("same password here") != hasher.hash("same password here")


def test_no_truncation_after_72_bytes(hasher: PasswordHasher) -> None:
    # bcrypt would see these two as one password; argon2id reads every byte.
    base = "x" * 72
    encoded = hasher.hash(base + "A")
    hasher.verify(encoded, base + "A")
    with pytest.raises(PasswordMismatchError):
        hasher.verify(encoded, base + "B")
    with pytest.raises(PasswordMismatchError):
        hasher.verify(encoded, base)


def test_no_case_folding(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("Tr0ub4dor&3-long")
    with pytest.raises(PasswordMismatchError):
        hasher.verify(encoded, "tr0ub4dor&3-long")


def test_unicode_kept_and_canonical_spellings_equal(hasher: PasswordHasher) -> None:
    composed = "pässwörd-ünïcödé-🔑"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    encoded = hasher.hash(composed)
    hasher.verify(encoded, decomposed)  # the same characters, typed another way
    with pytest.raises(PasswordMismatchError):
        hasher.verify(encoded, "passwörd-ünïcödé-🔑")  # one letter differs
    with pytest.raises(PasswordMismatchError):
        hasher.verify(encoded, "pässwörd-ünïcödé-")  # the emoji counts
    # NFC removes nothing: compatibility characters (full-width letters) stay distinct.
    full_width = "\uff50\uff41\uff53\uff53"
    assert normalize_password(full_width) == full_width


def test_rehash_due_when_parameters_rise() -> None:
    weaker = PasswordHasher(Argon2Parameters(memory_kib=9_216, time_cost=4))
    encoded = weaker.hash("an old password hash")
    stronger = PasswordHasher(Argon2Parameters(memory_kib=19_456, time_cost=2))
    assert stronger.verify(encoded, "an old password hash").needs_rehash is True
    assert weaker.verify(encoded, "an old password hash").needs_rehash is False


def test_a_broken_stored_hash_is_a_mismatch(hasher: PasswordHasher) -> None:
    for stored in ("", "not a hash", "$argon2id$v=19$m=19456,t=2,p=1$AAAA"):
        with pytest.raises(PasswordMismatchError):
            hasher.verify(stored, "whatever it is")


def test_a_lone_surrogate_mismatches_rather_than_crashing(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("a sound password")
    with pytest.raises(PasswordMismatchError):
        hasher.verify(encoded, "\ud800 broken")


def test_dummy_verify_costs_one_argon2_verify_and_fails(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_verifies(monkeypatch)
    with pytest.raises(PasswordMismatchError):
        hasher.verify_dummy("anything at all")
    assert len(calls) == 1
    # Under the hasher's own parameters: it costs what a real user's verify costs.
    assert calls[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_at_most_one_argon2_per_usable_core_at_once(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A burst of logins queues for the hashing pool instead of running (and holding
    # m MiB) all at once; every one still completes.
    running, peak = 0, 0
    lock = threading.Lock()
    real = argon2.PasswordHasher.verify

    def counted(self: argon2.PasswordHasher, encoded: str | bytes, password: str | bytes) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            time.sleep(0.02)  # long enough for the whole burst to be submitted meanwhile
            return real(self, encoded, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counted)
    encoded = hasher.hash("correct horse")
    burst = HASHING_THREADS * 4
    results = await asyncio.gather(
        *(hasher.verify_async(encoded, "correct horse") for _ in range(burst)),
        *(hasher.verify_dummy_async("wrong") for _ in range(burst)),
        return_exceptions=True,
    )
    assert peak == HASHING_THREADS
    assert all(isinstance(r, VerifiedPassword) for r in results[:burst])
    assert all(isinstance(r, PasswordMismatchError) for r in results[burst:])
