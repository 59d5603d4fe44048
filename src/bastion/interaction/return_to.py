"""Where a login sends the browser back to: same-origin relative paths only.

A ``return_to`` that another site can choose is an open redirect: a phishing
page links to ``/login?return_to=https://evil.example`` and the user, after a
real login at bastion, lands on the attacker's copy. Browsers read many more
spellings as "another host" than ``https://``: ``//evil``, ``/\\evil`` (a
backslash is a slash to them), ``/%2F/evil`` once something decodes it, a tab
or newline inside ``//`` (removed by the URL parser). So the rule is an
allow-list: a path that starts with exactly one ``/``, made of URL characters
(RFC 3986 path, query and fragment characters, nothing else), whose
percent-decoded form is just as harmless, with no dot segments.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

from bastion.errors import BastionError

__all__ = ["DEFAULT_RETURN_TO", "MAX_RETURN_TO", "UnsafeReturnToError", "check_return_to"]

DEFAULT_RETURN_TO: Final = "/account"
#: Longer than any deep link worth returning to; bounds the work and the cookie-less form.
MAX_RETURN_TO: Final = 2048
# RFC 3986 pchar plus "/", "?", "#" and "%" (checked below): no space, "\", "<", '"', non-ASCII.
_URL_CHARACTERS: Final = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?#%]*")
_DECODINGS: Final = 3


class UnsafeReturnToError(BastionError):
    """A ``return_to`` that is not a same-origin relative path (400; the login ignores it)."""

    code = "invalid_return_to"
    status = 400
    title = "Invalid return address"


def _harmless(text: str) -> bool:
    if not text.startswith("/") or text.startswith("//"):
        return False
    if "\\" in text or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
        return False
    path = text.split("?", 1)[0].split("#", 1)[0]
    return not any(segment in (".", "..") for segment in path.split("/"))


def check_return_to(value: str) -> str:
    """``value`` when it is a safe same-origin path to return to; else raise.

    Raises:
        UnsafeReturnToError: an absolute or scheme-relative URL, a backslash, a
            control character, a character outside URLs, a dot segment, or any of
            these hidden behind up to three rounds of percent-encoding.
    """
    if not value or len(value) > MAX_RETURN_TO or not _URL_CHARACTERS.fullmatch(value):
        raise UnsafeReturnToError("return_to must be a path on this site, like /account")
    text = value
    for _ in range(_DECODINGS):
        if not _harmless(text):
            raise UnsafeReturnToError("return_to must be a path on this site, like /account")
        decoded = unquote(text, errors="replace") if "%" in text else text
        if decoded == text:
            return value
        text = decoded
    # Still changing after three decodings: nobody links like that but an attacker.
    raise UnsafeReturnToError("return_to is encoded too many times")
