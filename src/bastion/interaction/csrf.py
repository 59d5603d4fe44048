"""CSRF protection of every form: a signed double-submit token.

The browser holds a random value in the ``__Host-bastion_csrf`` cookie
(``Secure; HttpOnly; SameSite=Lax; Path=/``: the ``__Host-`` prefix means no
other host, not even a sibling subdomain, can set or overwrite it — the
weakness of plain double-submit cookies). Every form carries
``HMAC(key, cookie)``, the key derived from the master key, so the token can
neither be read by another site (it is only in bastion's pages) nor minted
without the key; a POST whose token does not match its cookie is refused (403).
It works before there is a session (the login form) and needs no server state.
"""

from __future__ import annotations

from typing import Final

from bastion.crypto import Keyring
from bastion.crypto.digests import constant_time_equals, hmac_sha256_hex, random_token
from bastion.crypto.macs import derive_key
from bastion.errors import BastionError

__all__ = ["CSRF_COOKIE", "CSRF_FIELD", "CsrfError", "CsrfTokens"]

CSRF_COOKIE: Final = "__Host-bastion_csrf"
CSRF_FIELD: Final = "csrf_token"
# Longer than any value this module makes: anything else is refused unread.
_MAX: Final = 128


class CsrfError(BastionError):
    """The form's CSRF token is missing or does not match the browser's cookie (403)."""

    code = "csrf_failed"
    status = 403
    title = "Form expired"


class CsrfTokens:
    """Makes cookie values and the form tokens that go with them, under one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_keyring(cls, keyring: Keyring) -> CsrfTokens:
        """Tokens under the ``csrf`` key derived from ``keyring``'s primary master key."""
        return cls(derive_key(keyring, "csrf"))

    @staticmethod
    def new_cookie() -> str:
        """A fresh random cookie value (256 bits)."""
        return random_token(32)

    def token_for(self, cookie: str) -> str:
        """The form token that goes with the cookie value ``cookie``."""
        return hmac_sha256_hex(self._key, b"bastion-csrf:" + cookie.encode("utf-8"))

    def verify(self, cookie: str | None, token: str | None) -> None:
        """Return when ``token`` belongs to ``cookie``; else raise.

        Raises:
            CsrfError: no cookie, no token, or a token made for another cookie.
        """
        if not cookie or not token or len(cookie) > _MAX or len(token) > _MAX:
            raise CsrfError("The form is missing its security token; reload the page.")
        if not constant_time_equals(self.token_for(cookie), token):
            raise CsrfError("The form's security token does not match; reload the page.")
