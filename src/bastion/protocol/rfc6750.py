"""Bearer token usage — RFC 6750 (https://www.rfc-editor.org/rfc/rfc6750), at a resource
bastion serves itself (the OpenID Connect userinfo endpoint).

Only the ``Authorization: Bearer`` header (§2.1) is accepted. The form-body (§2.2)
and URI-query (§2.3) methods are refused with ``invalid_request``: a token in a URL
ends up in logs and ``Referer`` headers (§5.3, RFC 9700 §4.3.2), and one in a form body
is a CSRF-able form of the same. The errors render their own ``WWW-Authenticate``
challenge (§3): no token at all is a bare ``Bearer`` challenge (§3.1: no error code),
``invalid_token`` 401, ``insufficient_scope`` 403 with the ``scope`` needed.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final

from bastion.protocol.rfc6749.errors import OAuthError

__all__ = [
    "CHALLENGE",
    "BearerInsufficientScopeError",
    "BearerInvalidRequestError",
    "BearerInvalidTokenError",
    "BearerMissingError",
    "bearer_token",
]

#: The challenge's scheme and realm.
CHALLENGE: Final = 'Bearer realm="bastion"'
#: RFC 6750 §2.1 ``b64token`` (RFC 7235 token68).
_B64TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_MAX_TOKEN: Final = 16 * 1024


def _challenge(error: str | None = None, description: str | None = None, **more: str) -> str:
    parts = [CHALLENGE]
    if error is not None:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{description}"')
    parts.extend(f'{name}="{value}"' for name, value in more.items())
    return ", ".join(parts)


class BearerMissingError(OAuthError):
    """No credentials at all (§3.1: 401 with a bare challenge, no error code)."""

    code = "invalid_token"
    status = 401
    title = "Authentication required"

    def __init__(self) -> None:
        super().__init__("a Bearer access token is required", reason="token_missing")
        self.www_authenticate = CHALLENGE


class BearerInvalidRequestError(OAuthError):
    """A malformed request: the token in the query or form body, or an unreadable header."""

    code = "invalid_request"
    status = 400
    title = "Invalid request"

    def __init__(self, description: str, *, reason: str) -> None:
        super().__init__(description, reason=reason)
        self.www_authenticate = _challenge(self.code, self.error_description)


class BearerInvalidTokenError(OAuthError):
    """The token is expired, revoked, malformed or its user gone (401 ``invalid_token``)."""

    code = "invalid_token"
    status = 401
    title = "Invalid token"

    def __init__(self, description: str = "the access token is invalid", *, reason: str) -> None:
        super().__init__(description, reason=reason)
        self.www_authenticate = _challenge(self.code, self.error_description)


class BearerInsufficientScopeError(OAuthError):
    """The token lacks a scope the resource needs (403 ``insufficient_scope``)."""

    code = "insufficient_scope"
    status = 403
    title = "Insufficient scope"

    def __init__(self, needed: Collection[str]) -> None:
        scope = " ".join(needed)
        super().__init__(f"the access token needs the scope {scope}", reason="insufficient_scope")
        self.www_authenticate = _challenge(self.code, self.error_description, scope=scope)


def bearer_token(
    authorization: str | None, *, in_query: bool = False, in_body: bool = False
) -> str:
    """The access token of the ``Authorization: Bearer`` header (§2.1).

    ``in_query`` / ``in_body``: an ``access_token`` parameter came in the URI query or
    the form body — refused, even beside a header (§2: one method per request).

    Raises:
        BearerInvalidRequestError: a token in the query or body, or a malformed header.
        BearerMissingError: no ``Authorization`` header (or another scheme).
    """
    if in_query or in_body:
        where = "URI query" if in_query else "form body"
        raise BearerInvalidRequestError(
            f"send the access token in the Authorization header, not in the {where}",
            reason=f"token_in_{'query' if in_query else 'body'}",
        )
    if authorization is None:
        raise BearerMissingError()
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise BearerMissingError()
    value = value.strip()
    if not value or len(value) > _MAX_TOKEN or not _B64TOKEN.fullmatch(value):
        raise BearerInvalidRequestError("malformed Bearer credentials", reason="malformed_header")
    return value
