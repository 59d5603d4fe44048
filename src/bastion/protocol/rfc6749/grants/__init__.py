"""OAuth 2.0 grant types, one module each (RFC 6749 §4 and extensions).

A grant is an object the token endpoint's table holds (see
:mod:`bastion.protocol.rfc6749.token_endpoint`). Like Authlib's grants, each
declares what it needs before it runs:

- :attr:`Grant.client_authentication`: ``"required"`` (RFC 6749 §3.2.1: the
  client authenticates, else ``invalid_client``) or ``"optional"`` (RFC 8693
  §2.1: client authentication is optional; credentials that are sent must
  still be valid, and the grant then sees the client, else ``None``);
- :meth:`Grant.issue` takes a :class:`TokenRequest`: the parsed request, the
  authenticated client (or ``None``) and the caller's address, and returns the
  successful token response members (RFC 6749 §5.1), or raises an
  :class:`~bastion.protocol.rfc6749.errors.OAuthError`.

The token endpoint authenticates the client as the grant declares; a grant
never authenticates anything itself, so a new grant is one table entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from bastion.protocol.rfc6749.errors import InvalidClientError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client

__all__ = ["ClientAuthentication", "Grant", "IssueToken", "TokenRequest", "bearer_response"]

#: How a grant needs the client authenticated (see the module docstring).
ClientAuthentication: TypeAlias = Literal["required", "optional"]

#: ``(request, client) -> token response members`` (raises OAuthError).

#: Signs an access token: ``claims -> compact JWT`` (the signer lives outside protocol/).
IssueToken: TypeAlias = Callable[[dict[str, Any]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a grant is given: the request, who sent it, and from where.

    ``client`` is ``None`` only for a grant whose client authentication is
    ``"optional"`` when the request carried no client credentials.
    ``client_ip`` is the caller's address as bastion resolves it (trusted
    proxies honoured), ``None`` when the server gave no peer.
    """

    request: OAuthRequest
    client: Client | None
    client_ip: str | None = None

    def authenticated_client(self) -> Client:
        """The authenticated client; raises ``InvalidClientError`` when there is none.

        What a grant requiring client authentication reads: the token endpoint
        never calls it without one, and the grant must not go on if it did.
        """
        if self.client is None:
            raise InvalidClientError(reason="client_not_authenticated")
        return self.client


def bearer_response(access_token: str, ttl: int, scope: str, **extra: str) -> dict[str, Any]:
    """The members of a successful token response (RFC 6749 §5.1): ``token_type: Bearer``,
    ``expires_in``, ``scope`` unless empty, and ``extra`` (e.g. ``refresh_token``)."""
    response: dict[str, Any] = {"access_token": access_token, **extra}
    response["token_type"] = "Bearer"  # noqa: S105 - a token type, not a secret
    response["expires_in"] = ttl
    if scope:
        response["scope"] = scope
    return response


class Grant(Protocol):
    """One grant type of the token endpoint (see the module docstring)."""

    @property
    def client_authentication(self) -> ClientAuthentication:
        """Whether the client must authenticate (``"required"``) or may (``"optional"``)."""
        ...

    async def issue(self, token_request: TokenRequest) -> dict[str, Any]:
        """The token response members for ``token_request``; raises ``OAuthError``."""
        ...
