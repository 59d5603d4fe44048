"""The API key format: generation, offline checksum validation and the stored digest.

A key reads ``bst_`` + an optional environment tag and ``_`` (``bst_live_``) +
32 base62 characters from :mod:`secrets` (~190 bits) + a 6-character base62
CRC32 checksum of everything before it, zero-padded::

    bst_live_Xq3...(32)...9Zk1Ab2c      (32 random + 6 checksum characters)

The fixed prefix and the checksum make leaked keys recognisable by secret
scanners (GitHub-style, see ``docs/api-keys.md``) and let bastion refuse a
mistyped or forged key without touching the database. Keys are stored only as
their SHA-256 hex digest, or HMAC-SHA256 under a server pepper when one is
configured; the display prefix (``bst_live_Xq3abc``) is not secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass
from typing import Final

from bastion.crypto.errors import CryptoError

__all__ = [
    "API_KEY_PREFIX",
    "API_KEY_REGEX",
    "ApiKeyFormatError",
    "ParsedApiKey",
    "api_key_digest",
    "generate_api_key",
    "parse_api_key",
]

API_KEY_PREFIX: Final = "bst_"
#: Characters of randomness (62**32 ≈ 2**190.5).
RANDOM_LENGTH: Final = 32
#: Characters of the base62 CRC32 checksum (62**6 > 2**32, so every CRC fits).
CHECKSUM_LENGTH: Final = 6
#: Random characters shown after the prefix (and tag) in listings.
DISPLAY_RANDOM_CHARS: Final = 6
#: The longest key the format allows (prefix + 10-character tag + "_" + body).
MAX_API_KEY_LENGTH: Final = len(API_KEY_PREFIX) + 11 + RANDOM_LENGTH + CHECKSUM_LENGTH

_ALPHABET: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
_ALPHABET_INDEX: Final = {ch: i for i, ch in enumerate(_ALPHABET)}
_ENVIRONMENT: Final = re.compile(r"[a-z][a-z0-9]{0,9}")

#: The exact format, for secret-scanning partners (documented in docs/api-keys.md).
API_KEY_REGEX: Final = (
    r"bst_(?:[a-z][a-z0-9]{0,9}_)?"
    rf"[0-9A-Za-z]{{{RANDOM_LENGTH}}}[0-9A-Za-z]{{{CHECKSUM_LENGTH}}}"
)
_KEY: Final = re.compile(
    r"bst_(?:(?P<env>[a-z][a-z0-9]{0,9})_)?"
    rf"(?P<random>[0-9A-Za-z]{{{RANDOM_LENGTH}}})(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)


class ApiKeyFormatError(CryptoError):
    """A presented string is not a well-formed bastion API key.

    Outward always ``invalid_api_key`` (401) with one detail; ``reason`` is
    ``malformed`` (wrong shape) or ``bad_checksum`` (shape right, checksum
    wrong) for the audit log. The key itself is never part of the message.
    """

    code = "invalid_api_key"
    status = 401
    title = "Invalid API key"

    def __init__(self, reason: str) -> None:
        super().__init__("the API key is not valid")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedApiKey:
    """What can be read from a key without a database: its tag and display prefix."""

    environment: str | None
    display_prefix: str


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def generate_api_key(environment: str | None = None) -> str:
    """A new API key, optionally tagged with ``environment`` (``live`` → ``bst_live_…``).

    Raises:
        ValueError: ``environment`` is not 1-10 lower-case letters/digits starting with
            a letter (a programming or configuration error, checked at settings load).
    """
    if environment is not None and not _ENVIRONMENT.fullmatch(environment):
        raise ValueError(
            "the API key environment tag must be 1-10 lower-case letters or digits "
            f"starting with a letter, not {environment[:20]!r}"
        )
    head = API_KEY_PREFIX + (f"{environment}_" if environment else "")
    # One uniform draw below 62**32, written in base62: uniform characters, one CSPRNG call.
    body = head + _base62(secrets.randbelow(62**RANDOM_LENGTH), RANDOM_LENGTH)
    return body + _checksum(body)


def parse_api_key(key: str) -> ParsedApiKey:
    """Check a key's shape and checksum offline; return its tag and display prefix.

    Runs in time bounded by :data:`MAX_API_KEY_LENGTH` whatever ``key`` is.

    Raises:
        ApiKeyFormatError: ``reason`` ``malformed`` or ``bad_checksum``.
    """
    if not isinstance(key, str) or len(key) > MAX_API_KEY_LENGTH:
        raise ApiKeyFormatError("malformed")
    match = _KEY.fullmatch(key)
    if match is None:
        raise ApiKeyFormatError("malformed")
    body = key[:-CHECKSUM_LENGTH]
    if not hmac.compare_digest(_checksum(body), match["checksum"]):
        raise ApiKeyFormatError("bad_checksum")
    environment = match["env"]
    head = API_KEY_PREFIX + (f"{environment}_" if environment else "")
    return ParsedApiKey(
        environment=environment,
        display_prefix=head + match["random"][:DISPLAY_RANDOM_CHARS],
    )


def api_key_digest(key: str, *, pepper: bytes | None = None) -> str:
    """The stored form of ``key``: SHA-256 hex, or HMAC-SHA256(``pepper``) hex when peppered."""
    data = key.encode("utf-8", "surrogatepass")
    if pepper:
        return hmac.new(pepper, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()
