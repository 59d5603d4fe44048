"""Distinct outcomes of the durable repositories, as error classes.

Single-use and rotation checks are security checks, so they raise: a replayed
authorization code raises :class:`CodeReplayError`, a reused refresh token
:class:`RefreshTokenReuseError`. Both carry the stored record so the caller can
revoke what the code or token family issued (RFC 9700 §2.1.1, §4.14.2).
"""

from __future__ import annotations

from bastion.storage.errors import StorageError
from bastion.storage.models import AuthorizationCode, RefreshToken


class CodeReplayError(StorageError):
    """An authorization code was presented a second time.

    ``record`` is the stored code (with ``consumed_at`` from the first use).
    """

    code = "code_replay"
    status = 400
    title = "Authorization code already used"

    def __init__(self, record: AuthorizationCode) -> None:
        super().__init__("the authorization code was already used")
        self.record = record


class RefreshTokenReuseError(StorageError):
    """A refresh token that was already rotated was presented again.

    ``record`` is the stored, rotated token: revoke its ``family_id``.
    """

    code = "refresh_token_reuse"
    status = 400
    title = "Refresh token reused"

    def __init__(self, record: RefreshToken) -> None:
        super().__init__("the refresh token was already rotated")
        self.record = record


class RefreshTokenRevokedError(StorageError):
    """A revoked refresh token was presented. ``record`` is the stored token."""

    code = "refresh_token_revoked"
    status = 400
    title = "Refresh token revoked"

    def __init__(self, record: RefreshToken) -> None:
        super().__init__("the refresh token was revoked")
        self.record = record


class InvalidCursorError(StorageError):
    """A pagination cursor was not one this repository produced."""

    code = "invalid_cursor"
    status = 400
    title = "Invalid cursor"


class DatabaseConfigError(StorageError):
    """The database URL or location is unusable (bad scheme, unwritable directory)."""

    code = "database_config"
    status = 500
    title = "Database configuration error"


__all__ = [
    "CodeReplayError",
    "DatabaseConfigError",
    "InvalidCursorError",
    "RefreshTokenReuseError",
    "RefreshTokenRevokedError",
]
