"""Counting argon2 verifies: what "costs the same" means in tests (never wall time)."""

from __future__ import annotations

import argon2
import pytest


def count_verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, every hash argon2 verifies against is appended to the returned list."""
    calls: list[str] = []
    real = argon2.PasswordHasher.verify

    def counted(self: argon2.PasswordHasher, encoded: str | bytes, password: str | bytes) -> bool:
        calls.append(encoded if isinstance(encoded, str) else encoded.decode())
        return real(self, encoded, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", counted)
    return calls
