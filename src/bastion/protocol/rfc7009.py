"""OAuth 2.0 Token Revocation — RFC 7009 (https://www.rfc-editor.org/rfc/rfc7009).

The caller is an authenticated client (public clients authenticate with
``none``: §2.1 lets them revoke their own tokens). ``token`` is required;
``token_type_hint`` is accepted and ignored (§2.1: the server "MAY ignore this
parameter"): bastion's revocable tokens are JWT access tokens, revoked by
putting their ``jti`` on a deny-list in shared state until their ``exp``.

Decisions, from the RFC text:

- Unknown, malformed, expired or already revoked tokens: 200 and nothing
  happens (§2.2: "invalid tokens do not cause an error response", and an
  expired token needs no revocation).
- A valid token issued to ANOTHER client: refused with ``invalid_grant`` (400)
  and not revoked. §2.1: the server "verifies whether the token was issued to
  the client making the revocation request. If this validation fails, the
  request is refused and the client is informed of the error"; RFC 6749 §5.2
  defines ``invalid_grant`` for a grant that "was issued to another client"
  (Authlib made the same choice, lepture/authlib#646). It tells the caller
  nothing it did not know: it already holds the token and could use it.
- ``unsupported_token_type`` (§2.2.1) is never needed: every token bastion
  issues as an access token is revocable here.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from bastion.protocol.rfc6749.errors import InvalidGrantError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc7662 import VerifyToken, token_claims
from bastion.storage.models import Client

__all__ = ["RevokeJti", "revoke"]

#: ``(jti, exp) -> None``: deny-lists a token id until its expiry (epoch seconds).
RevokeJti: TypeAlias = Callable[[str, float], Awaitable[None]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


async def revoke(
    request: OAuthRequest, *, caller: Client, verify_token: VerifyToken, revoke_jti: RevokeJti
) -> bool:
    """Revoke the access token in ``request`` if it belongs to ``caller``.

    Returns whether a token was revoked now (for the audit log; the HTTP
    response is 200 either way). ``verify_token`` raising a
    :class:`~bastion.errors.BastionError` means the token is not valid — nothing
    to revoke — except :class:`~bastion.errors.ServiceUnavailableError`, which
    propagates.

    Raises:
        InvalidRequestError: the ``token`` parameter is missing.
        InvalidGrantError: the token is valid but was issued to another client.
        ServiceUnavailableError: from ``verify_token`` or ``revoke_jti``.
    """
    claims = await token_claims(request, verify_token)
    if claims is None:
        return False
    if claims.get("client_id") != caller.client_id:
        raise InvalidGrantError("the token was not issued to this client", reason="foreign_token")
    jti = claims.get("jti")
    exp = _number(claims.get("exp"))
    if not isinstance(jti, str) or not jti or exp is None:
        return False  # bastion's tokens always carry both; nothing to deny-list otherwise
    await revoke_jti(jti, exp)
    return True
