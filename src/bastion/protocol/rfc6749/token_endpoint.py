"""The token endpoint — RFC 6749 §3.2 and §5 (https://www.rfc-editor.org/rfc/rfc6749#section-3.2).

Dispatches a token request to the grant of its ``grant_type``. The grants are
one table (grant type → :class:`~bastion.protocol.rfc6749.grants.Grant`):
adding a grant is one entry, and every grant goes through the same steps:

1. the client authenticates as the grant declares
   (:attr:`~bastion.protocol.rfc6749.grants.Grant.client_authentication`):
   ``"required"`` — always (§3.2.1), before anything else is looked at;
   ``"optional"`` — only when the request carries client credentials (RFC 8693
   §2.1), which must then be valid. An unknown or missing ``grant_type``
   authenticates the client first, so an unauthenticated caller learns nothing;
2. the grant runs with a :class:`~bastion.protocol.rfc6749.grants.TokenRequest`
   (the request, the client or ``None``, the caller's address).

How a client authenticates (methods, throttling, audit) is the caller's
:data:`Authenticate`; this module only decides whether it must. The password
and implicit grants are refused on purpose (RFC 9700 §2.4 and §2.1.2); any
other unknown grant type is ``unsupported_grant_type``. Successful responses
carry ``Cache-Control: no-store`` and ``Pragma: no-cache`` (§5.1), like the
errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final, TypeAlias

import orjson

from bastion.protocol.rfc6749.client_auth import sends_client_credentials
from bastion.protocol.rfc6749.errors import InvalidRequestError, UnsupportedGrantTypeError
from bastion.protocol.rfc6749.grants import Grant, TokenRequest
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client

__all__ = [
    "REFUSED_GRANT_TYPES",
    "TOKEN_RESPONSE_HEADERS",
    "Authenticate",
    "TokenEndpoint",
    "token_response",
]

#: Grant types bastion never supports, with the reason told to the client.
REFUSED_GRANT_TYPES: Final[Mapping[str, str]] = {
    "password": "the password grant is not supported (RFC 9700 section 2.4)",
    "implicit": "the implicit grant is not supported (RFC 9700 section 2.1.2)",
}

#: RFC 6749 §5.1: token responses must never be cached.
TOKEN_RESPONSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}

#: ``request -> the authenticated client``; raises ``InvalidClientError`` (or a
#: throttle's error) when the client does not authenticate.
Authenticate: TypeAlias = Callable[[OAuthRequest], Awaitable[Client]]

_MAX_GRANT_TYPE_ECHO: Final = 100


def token_response(body: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """``(200, headers, JSON body)`` of a successful token response (RFC 6749 §5.1)."""
    return 200, dict(TOKEN_RESPONSE_HEADERS), orjson.dumps(dict(body))


class TokenEndpoint:
    """The grant table of the token endpoint.

    ``grants`` maps each supported ``grant_type`` to its grant (see
    :mod:`bastion.protocol.rfc6749.grants`). The password and implicit grants
    cannot be registered. ``unadvertised`` grant types are served but left out
    of :attr:`grant_types` (the metadata document): a grant whose other half —
    the authorization endpoint, for ``authorization_code`` — does not exist yet.

    Raises:
        ValueError: a refused grant type in ``grants``.
    """

    __slots__ = ("_grants", "_unadvertised")

    def __init__(self, grants: Mapping[str, Grant], *, unadvertised: Collection[str] = ()) -> None:
        refused = sorted(set(grants) & set(REFUSED_GRANT_TYPES))
        if refused:
            raise ValueError(f"grant types {refused} are refused by design")
        self._grants = dict(grants)
        self._unadvertised = frozenset(unadvertised)

    @property
    def grant_types(self) -> tuple[str, ...]:
        """The supported grant types, for the metadata document."""
        return tuple(g for g in self._grants if g not in self._unadvertised)

    async def handle(
        self, request: OAuthRequest, authenticate: Authenticate, *, client_ip: str | None = None
    ) -> dict[str, Any]:
        """Authenticate the client as the grant of ``request`` declares, then run the grant.

        ``client_ip`` is the caller's address, handed to the grant. Returns the
        token response members; render them with :func:`token_response`.

        Raises:
            InvalidClientError: (from ``authenticate``) the client did not authenticate.
            InvalidRequestError: ``grant_type`` is missing.
            UnsupportedGrantTypeError: the grant type is refused or unknown.
            OAuthError: whatever the grant raises.
        """
        grant_type = request.form.get("grant_type")
        grant = self._grants.get(grant_type) if grant_type is not None else None
        client: Client | None = None
        if (
            grant is None
            or grant.client_authentication == "required"
            or sends_client_credentials(request)
        ):
            client = await authenticate(request)
        if grant_type is None:
            raise InvalidRequestError("missing parameter 'grant_type'")
        if grant is None:
            refused = REFUSED_GRANT_TYPES.get(grant_type)
            raise UnsupportedGrantTypeError(
                refused or f"grant_type '{grant_type[:_MAX_GRANT_TYPE_ECHO]}' is not supported"
            )
        return await grant.issue(TokenRequest(request, client, client_ip))
