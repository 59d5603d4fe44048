"""The OAuth 2.0 Authorization Framework — RFC 6749 (https://www.rfc-editor.org/rfc/rfc6749).

Submodules: :mod:`.errors` (§5.2 error responses), :mod:`.requests` (§3.1
form parameters), :mod:`.scope` (§3.3), :mod:`.client_auth` (§2.3 and RFC
7523), :mod:`.token_endpoint` (§3.2 grant dispatch) and :mod:`.grants`.
This package re-exports only the errors and the request type, so importing
it stays cheap; import the other submodules by name.
"""

from __future__ import annotations

from bastion.protocol.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
)
from bastion.protocol.rfc6749.requests import OAuthRequest, parse_form

__all__ = [
    "InvalidClientError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "OAuthError",
    "OAuthRequest",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "parse_form",
]
