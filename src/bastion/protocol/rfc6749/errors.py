"""OAuth 2.0 error responses — RFC 6749 §5.2 (https://www.rfc-editor.org/rfc/rfc6749#section-5.2).

Every error an OAuth endpoint returns is one class here with its RFC ``error``
code (the same string as :attr:`~bastion.errors.BastionError.code`) and HTTP
status. An error renders itself as the JSON body RFC 6749 §5.2 defines, with
``Cache-Control: no-store`` (:meth:`OAuthError.to_token_response`).

``error_description`` is what the client sees; it is restricted to the
characters RFC 6749 §5.2 allows (printable ASCII without ``"`` and ``\\``), so
anything echoed from a request is made safe first. ``reason`` is the precise
machine reason for the audit log, which may say more than the description
(for ``invalid_client`` the description is collapsed on purpose).
"""

from __future__ import annotations

from typing import Any

import orjson

from bastion.errors import BastionError

__all__ = [
    "BASIC_CHALLENGE",
    "CLIENT_AUTHENTICATION_FAILED",
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "OAuthError",
    "TooManyAttemptsError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "safe_description",
]

#: The challenge sent with ``invalid_client`` when the client tried HTTP Basic.
BASIC_CHALLENGE = 'Basic realm="bastion"'

#: The one description every failed client authentication shows outside.
CLIENT_AUTHENTICATION_FAILED = "client authentication failed"

#: Longest error_description sent; longer text is cut (it may echo client input).
_MAX_DESCRIPTION = 300


def safe_description(text: str) -> str:
    """``text`` limited to the error_description characters of RFC 6749 §5.2.

    Characters outside ``%x20-21 / %x23-5B / %x5D-7E`` become ``?`` and the
    result is cut to 300 characters, so client input echoed in a description
    can never break the JSON consumer's assumptions or flood a log.
    """
    cleaned = "".join(ch if (0x20 <= ord(ch) <= 0x7E and ch not in '"\\') else "?" for ch in text)
    if len(cleaned) > _MAX_DESCRIPTION:
        cleaned = cleaned[: _MAX_DESCRIPTION - 3] + "..."
    return cleaned


class OAuthError(BastionError):
    """Root of every OAuth 2.0 protocol error (RFC 6749 §5.2).

    ``error`` is the RFC error code (equal to ``code``); ``error_description``
    the human text sent to the client (``None`` sends none); ``reason`` the
    machine reason for the audit log (defaults to the error code);
    ``www_authenticate`` an optional ``WWW-Authenticate`` header value.
    """

    code = "server_error"
    status = 400
    title = "OAuth error"

    def __init__(
        self,
        description: str | None = None,
        *,
        reason: str | None = None,
        www_authenticate: str | None = None,
        **extra: Any,
    ) -> None:
        self.error_description = safe_description(description) if description else None
        self.reason = reason or self.code
        self.www_authenticate = www_authenticate
        super().__init__(self.error_description or self.title, **extra)

    @property
    def error(self) -> str:
        """The RFC 6749 ``error`` code."""
        return self.code

    def to_json(self) -> dict[str, Any]:
        """The RFC 6749 §5.2 response members: ``error`` and, if set, ``error_description``."""
        body: dict[str, Any] = {"error": self.code}
        if self.error_description:
            body["error_description"] = self.error_description
        return body

    def headers(self) -> dict[str, str]:
        """The response headers: no caching, plus ``WWW-Authenticate`` when set."""
        headers = {
            "Content-Type": "application/json",
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
        }
        if self.www_authenticate:
            headers["WWW-Authenticate"] = self.www_authenticate
        return headers

    def to_token_response(self) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of the JSON error response of RFC 6749 §5.2."""
        return self.status, self.headers(), orjson.dumps(self.to_json())


class InvalidRequestError(OAuthError):
    """The request is missing a parameter, repeats one, or is otherwise malformed."""

    code = "invalid_request"
    status = 400
    title = "Invalid request"


class InvalidClientError(OAuthError):
    """Client authentication failed (unknown client, bad credentials, wrong method, disabled).

    Status 401. The description defaults to the one collapsed sentence
    :data:`CLIENT_AUTHENTICATION_FAILED`, so the outside cannot tell an unknown
    client from a wrong secret; ``reason`` tells the audit log which it was.
    ``basic=True`` (the client tried HTTP Basic) adds
    ``WWW-Authenticate: Basic realm="bastion"`` as RFC 6749 §5.2 requires.
    """

    code = "invalid_client"
    status = 401
    title = "Invalid client"

    def __init__(
        self,
        description: str | None = CLIENT_AUTHENTICATION_FAILED,
        *,
        reason: str | None = None,
        basic: bool = False,
        www_authenticate: str | None = None,
        **extra: Any,
    ) -> None:
        challenge = www_authenticate or (BASIC_CHALLENGE if basic else None)
        super().__init__(description, reason=reason, www_authenticate=challenge, **extra)

    def with_basic_challenge(self) -> InvalidClientError:
        """This error again, with the Basic challenge (same description and reason)."""
        return InvalidClientError(self.error_description, reason=self.reason, basic=True)


class InvalidGrantError(OAuthError):
    """The grant (code, refresh token, token) is invalid, expired, or issued to another client."""

    code = "invalid_grant"
    status = 400
    title = "Invalid grant"


class UnauthorizedClientError(OAuthError):
    """The authenticated client may not use this grant type (or endpoint)."""

    code = "unauthorized_client"
    status = 400
    title = "Unauthorized client"


class UnsupportedGrantTypeError(OAuthError):
    """The grant type is not supported by this authorization server."""

    code = "unsupported_grant_type"
    status = 400
    title = "Unsupported grant type"


class InvalidScopeError(OAuthError):
    """The requested scope is malformed or exceeds what the client is allowed."""

    code = "invalid_scope"
    status = 400
    title = "Invalid scope"


class InvalidTargetError(OAuthError):
    """The requested resource is invalid or not allowed (RFC 8707 §2)."""

    code = "invalid_target"
    status = 400
    title = "Invalid target"


class TooManyAttemptsError(OAuthError):
    """Too many failed client authentications from this client and/or address (429).

    RFC 6749 §5.2 defines no throttling error, so this is an extension code
    (§8.5): ``too_many_attempts`` with status 429 and ``Retry-After`` (RFC 6585
    §4), which generic clients treat as "retry later". It is raised *before*
    the credentials are verified, so it says nothing about their validity.
    """

    code = "too_many_attempts"
    status = 429
    title = "Too many attempts"

    def __init__(self, retry_after: int, *, reason: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(
            f"too many failed attempts; retry in {self.retry_after} seconds",
            reason=reason or "throttled",
        )

    def headers(self) -> dict[str, str]:
        """The error headers plus ``Retry-After`` (whole seconds)."""
        return {**super().headers(), "Retry-After": str(self.retry_after)}
