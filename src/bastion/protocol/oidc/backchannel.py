"""OpenID Connect Back-Channel Logout 1.0 (https://openid.net/specs/openid-connect-backchannel-1_0.html).

- :func:`logout_token_claims` — the Logout Token of §2.4: ``iss``, ``aud`` (the client),
  ``iat``, ``exp``, ``jti``, ``sub``, ``sid`` and ``events`` with the back-channel logout
  event as its one member; never ``nonce`` (§2.4: "A nonce Claim MUST NOT be present").
  Signed with ``typ: logout+jwt`` (:data:`LOGOUT_TOKEN_TYP`, §2.4 and RFC 8725 §3.11
  explicit typing), so it cannot pass for an ID token.
- The request (§2.5): ``POST`` of ``application/x-www-form-urlencoded`` with the one
  parameter ``logout_token``; a 200 (or 204) answer is success.
- Discovery (§2.1): :data:`DISCOVERY_MEMBERS`.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "BACKCHANNEL_LOGOUT_EVENT",
    "DISCOVERY_MEMBERS",
    "LOGOUT_TOKEN_TTL",
    "LOGOUT_TOKEN_TYP",
    "logout_token_claims",
]

BACKCHANNEL_LOGOUT_EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYP: Final = "logout+jwt"  # noqa: S105 - a media type, not a password
#: Lifetime of a logout token, seconds (§2.4 recommends "at most two minutes").
LOGOUT_TOKEN_TTL: Final = 120
#: What the OP metadata says (§2.1), and that front-channel logout is not offered.
DISCOVERY_MEMBERS: Final = {
    "backchannel_logout_supported": True,
    "backchannel_logout_session_supported": True,
    "frontchannel_logout_supported": False,
}


def logout_token_claims(
    *, issuer: str, client_id: str, subject: str, session_id: str, now: int, jti: str
) -> dict[str, Any]:
    """The claims of a logout token for ``client_id``: the user ``subject`` and the session
    ``session_id`` ended (``sid`` always: it is what ID tokens carry). No ``nonce``."""
    return {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + LOGOUT_TOKEN_TTL,
        "jti": jti,
        "sub": subject,
        "sid": session_id,
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
