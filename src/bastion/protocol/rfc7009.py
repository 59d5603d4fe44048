"""OAuth 2.0 Token Revocation — RFC 7009 (https://www.rfc-editor.org/rfc/rfc7009).

The caller is an authenticated client (public clients authenticate with
``none``: §2.1 lets them revoke their own tokens). ``token`` is required.
bastion's access tokens are JWTs, revoked by putting their ``jti`` on a
deny-list in shared state until their ``exp``; its refresh tokens are opaque
and stored, and revoking one revokes its whole family with the access tokens
issued from it (§2.1: the server "SHOULD also invalidate the access token"),
which the caller's :data:`RevokeRefresh` does. ``token_type_hint`` is honoured
as an order, never trusted as a fact (§2.1: the server "MUST extend its search
across all of its supported token types"): ``refresh_token`` looks the token up
as a refresh token first, anything else as an access token first.

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
  issues is revocable here.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from bastion.protocol.rfc6749.errors import InvalidGrantError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.protocol.rfc7662 import VerifyToken, required_token, verified_claims
from bastion.storage.models import Client

__all__ = ["RevokeJti", "RevokeRefresh", "revoke"]

#: ``(jti, exp) -> None``: deny-lists a token id until its expiry (epoch seconds).
RevokeJti: TypeAlias = Callable[[str, float], Awaitable[None]]
#: ``(token, caller) -> whether it was a refresh token``, revoked with its family when it
#: was; raises ``InvalidGrantError`` when it is another client's.
RevokeRefresh: TypeAlias = Callable[[str, Client], Awaitable[bool]]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


async def revoke(
    request: OAuthRequest,
    *,
    caller: Client,
    verify_token: VerifyToken,
    revoke_jti: RevokeJti,
    revoke_refresh: RevokeRefresh | None = None,
) -> bool:
    """Revoke the token in ``request`` if it belongs to ``caller``.

    Returns whether a token was revoked now (for the audit log; the HTTP
    response is 200 either way). ``verify_token`` raising a
    :class:`~bastion.errors.BastionError` means the token is not a valid access
    token — nothing to revoke as one — except
    :class:`~bastion.errors.ServiceUnavailableError`, which propagates.
    ``revoke_refresh`` (none: refresh tokens are not known here) tries the token
    as a refresh token, first when the hint says ``refresh_token``.

    Raises:
        InvalidRequestError: the ``token`` parameter is missing.
        InvalidGrantError: the token is valid but was issued to another client.
        ServiceUnavailableError: from ``verify_token``, ``revoke_jti`` or ``revoke_refresh``.
    """
    token = required_token(request)
    if revoke_refresh is None:
        return await _revoke_access(token, caller, verify_token, revoke_jti)
    if request.form.get("token_type_hint") == "refresh_token":
        return await revoke_refresh(token, caller) or await _revoke_access(
            token, caller, verify_token, revoke_jti
        )
    return await _revoke_access(token, caller, verify_token, revoke_jti) or await revoke_refresh(
        token, caller
    )


async def _revoke_access(
    token: str, caller: Client, verify_token: VerifyToken, revoke_jti: RevokeJti
) -> bool:
    """Deny-list ``token`` if it is a valid access token of ``caller``; whether it was."""
    claims = await verified_claims(token, verify_token)
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
