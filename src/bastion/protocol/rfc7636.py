"""Proof Key for Code Exchange (PKCE) — RFC 7636 (https://www.rfc-editor.org/rfc/rfc7636).

bastion requires PKCE for every authorization code, whatever the client (RFC 9700
§2.1.1), and accepts only the ``S256`` method:

- the authorization request must carry ``code_challenge`` and
  ``code_challenge_method=S256`` (:func:`check_code_challenge`). ``plain`` is refused,
  and so is a missing method: RFC 7636 §4.3 makes a missing method mean ``plain``;
- ``code_verifier = 43*128unreserved`` (§4.1) and ``code_challenge`` follows the same
  grammar (§4.2); an S256 challenge is BASE64URL(SHA-256(verifier)) without padding,
  so exactly 43 characters of the base64url alphabet;
- at the token endpoint the verifier's challenge is compared with the stored one in
  constant time (:func:`verify_code_verifier`, §4.6); a mismatch is ``invalid_grant``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from bastion.crypto.digests import constant_time_equals
from bastion.protocol.rfc6749.errors import InvalidGrantError, InvalidRequestError

__all__ = [
    "CODE_CHALLENGE_METHODS",
    "S256",
    "check_code_challenge",
    "check_code_verifier",
    "s256_challenge",
    "verify_code_verifier",
]

#: The one transformation bastion accepts (RFC 7636 §4.2).
S256: Final = "S256"
#: Every ``code_challenge_method`` bastion supports, for the metadata documents.
CODE_CHALLENGE_METHODS: Final = (S256,)

#: ``43*128unreserved`` with ``unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"`` (§4.1).
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
#: BASE64URL of a 32-byte SHA-256 digest, without padding (§4.2, Appendix A).
_S256_CHALLENGE: Final = re.compile(r"[A-Za-z0-9\-_]{43}")


def s256_challenge(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2).

    Raises:
        UnicodeEncodeError: ``verifier`` is not ASCII (check it first with
            :func:`check_code_verifier`).
    """
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_code_challenge(challenge: str | None, method: str | None) -> str:
    """Return the ``code_challenge`` of an authorization request once it is acceptable.

    Raises:
        InvalidRequestError: the challenge is missing (PKCE is required, RFC 9700
            §2.1.1), the method is missing or not ``S256`` (``plain`` is refused), or
            the challenge is not 43 base64url characters.
    """
    if challenge is None:
        raise InvalidRequestError(
            "code_challenge is required: every client must use PKCE with S256",
            reason="pkce_missing",
        )
    if method is None:
        raise InvalidRequestError(
            "code_challenge_method is required and must be S256 (plain is not supported)",
            reason="pkce_method_missing",
        )
    if method != S256:
        raise InvalidRequestError(
            "code_challenge_method must be S256 (plain is not supported)",
            reason="pkce_method_unsupported",
        )
    if _S256_CHALLENGE.fullmatch(challenge) is None:
        raise InvalidRequestError(
            "code_challenge must be the 43-character base64url SHA-256 of the code_verifier",
            reason="pkce_challenge_malformed",
        )
    return challenge


def check_code_verifier(verifier: str | None) -> str:
    """Return ``verifier`` when it follows RFC 7636 §4.1's grammar.

    Raises:
        InvalidRequestError: missing, or not 43 to 128 unreserved characters.
    """
    if verifier is None:
        raise InvalidRequestError(
            "missing parameter 'code_verifier'", reason="pkce_verifier_missing"
        )
    if _VERIFIER.fullmatch(verifier) is None:
        raise InvalidRequestError(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            reason="pkce_verifier_malformed",
        )
    return verifier


def verify_code_verifier(verifier: str | None, challenge: str) -> None:
    """Return when ``verifier`` matches the S256 ``challenge`` stored with the code (§4.6).

    The comparison takes the same time wherever the two differ.

    Raises:
        InvalidRequestError: the verifier is missing or malformed.
        InvalidGrantError: the verifier does not match the challenge.
    """
    computed = s256_challenge(check_code_verifier(verifier))
    if not constant_time_equals(computed, challenge):
        raise InvalidGrantError("PKCE verification failed", reason="pkce_mismatch")
