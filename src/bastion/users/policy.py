"""The password policy of OWASP ASVS 5.0 (V6.2), with a bundled list of common passwords.

- Length counts characters (code points, after NFC: ``crypto/passwords.py``): at
  least ``users.password.min_length`` (12 by default, never below 8) and at most
  ``users.password.max_length`` (1024 by default, never below 128; it only bounds
  the time one hash takes).
- No composition rules (no "one digit, one symbol"), no truncation, no case
  folding: every character of the password counts, as typed.
- Refused when it is, compared case-insensitively, one of the common passwords
  shipped in ``common_passwords.txt.gz`` (see ``README.md`` here for the source),
  or the user's own username.

Nothing is downloaded at run time; the list is read once per process.
"""

from __future__ import annotations

import gzip
import importlib.resources
from functools import cache
from typing import Final

from bastion.crypto.passwords import normalize_password
from bastion.settings.users import PasswordSettings
from bastion.users.errors import WeakPasswordError

__all__ = ["COMMON_PASSWORDS_FILE", "PasswordPolicy", "common_passwords"]

#: The bundled list: one lower-cased password of 8+ characters per line, most common first.
COMMON_PASSWORDS_FILE: Final = "common_passwords.txt.gz"


@cache
def common_passwords() -> frozenset[str]:
    """The bundled common passwords, lower-cased (read once)."""
    data = importlib.resources.files("bastion.users").joinpath(COMMON_PASSWORDS_FILE).read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


class PasswordPolicy:
    """Decides whether a new password may be set (``check`` returns or raises)."""

    def __init__(self, settings: PasswordSettings) -> None:
        self.min_length = settings.min_length
        self.max_length = settings.max_length

    def check(self, password: str, *, username: str | None = None) -> None:
        """Accept ``password`` or raise naming the rule it breaks and the fix.

        Raises:
            WeakPasswordError: ``rule`` is ``unencodable`` (a lone surrogate),
                ``too_short``, ``too_long``, ``common`` or ``username``.
        """
        try:
            password.encode("utf-8")
        except UnicodeEncodeError:
            raise WeakPasswordError(
                "unencodable", "the password holds a character that is not valid Unicode"
            ) from None
        length = len(normalize_password(password))
        if length < self.min_length:
            raise WeakPasswordError(
                "too_short",
                f"use at least {self.min_length} characters (this one has {length}); "
                "a few unrelated words make a long password easy to remember",
            )
        if length > self.max_length:
            raise WeakPasswordError(
                "too_long", f"use at most {self.max_length} characters (this one has {length})"
            )
        folded = password.casefold()
        if folded in common_passwords():
            raise WeakPasswordError(
                "common",
                "this password is in a list of common or breached passwords; choose another",
            )
        if username is not None and folded == username.casefold():
            raise WeakPasswordError("username", "the password must not be the username")
