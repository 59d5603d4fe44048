"""OAuth 2.0 grant types, one module each (RFC 6749 §4 and extensions).

A grant handler takes the parsed token request and the authenticated client
and returns the successful token response members (RFC 6749 §5.1), or raises
an :class:`~bastion.protocol.rfc6749.errors.OAuthError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client

__all__ = ["GrantHandler", "IssueToken"]

#: ``(request, client) -> token response members`` (raises OAuthError).
GrantHandler: TypeAlias = Callable[[OAuthRequest, Client], Awaitable[dict[str, Any]]]

#: Signs an access token: ``claims -> compact JWT`` (the signer lives outside protocol/).
IssueToken: TypeAlias = Callable[[dict[str, Any]], Awaitable[str]]
