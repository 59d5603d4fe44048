"""Errors of the user registry.

A failed login is one :class:`InvalidCredentialsError` whatever the cause — an
unknown user, a wrong password, a disabled account, an account without a
password — with one detail, so an answer never tells which usernames exist;
the precise ``reason`` is for the audit log only. No message ever contains a
password.
"""

from __future__ import annotations

from typing import Final

from bastion.credentials.validation import SpecError
from bastion.errors import BastionError

__all__ = [
    "INVALID_CREDENTIALS_DETAIL",
    "InvalidCredentialsError",
    "UserError",
    "UserSpecError",
    "WeakPasswordError",
]

INVALID_CREDENTIALS_DETAIL: Final = "the username or password is not correct"


class UserError(BastionError):
    """Root of the user registry's errors."""

    code = "user_error"
    status = 500
    title = "User error"


class UserSpecError(SpecError, UserError):
    """A user's metadata is invalid (400 ``invalid_user_metadata``), naming the field."""

    code = "invalid_user_metadata"
    status = 400
    title = "Invalid user metadata"


class WeakPasswordError(UserError):
    """A new password breaks the policy (400); ``rule`` names which, the detail the fix.

    ``rule``: ``too_short``, ``too_long``, ``common``, ``username``, ``unencodable``.
    """

    code = "weak_password"
    status = 400
    title = "Password refused"

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail, rule=rule)
        self.rule = rule


class InvalidCredentialsError(UserError):
    """A username and password were refused (401), the same way for every cause.

    ``reason`` (audit only): ``unknown_user``, ``bad_password``, ``disabled``,
    ``no_password``.
    """

    code = "invalid_credentials"
    status = 401
    title = "Invalid credentials"

    def __init__(self, reason: str) -> None:
        # reason is deliberately not a problem member: the outside sees one answer.
        super().__init__(INVALID_CREDENTIALS_DETAIL)
        self.reason = reason
