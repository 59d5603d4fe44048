"""Pins bastion.interaction's public names: adding or removing one must be deliberate."""

from __future__ import annotations

import bastion.interaction

#: The names, as ``sorted`` orders them (upper case first).
PINNED = [
    "ActiveSession", "CSRF_COOKIE", "CSRF_FIELD", "CsrfError", "CsrfTokens", "DEFAULT_RETURN_TO",
    "EndReason", "SESSION_COOKIE", "SessionManager", "StartedSession", "UnsafeReturnToError",
    "check_return_to",
]  # fmt: skip


def test_public_names_are_pinned() -> None:
    assert sorted(bastion.interaction.__all__) == PINNED
    assert all(getattr(bastion.interaction, name) is not None for name in PINNED)
