"""OpenID Connect Core §5.3 UserInfo (https://openid.net/specs/openid-connect-core-1_0.html#UserInfo)
and the standard claims of §5.4 that bastion holds.

:func:`userinfo_claims` picks the claims an access token's scopes release (§5.4):
``sub`` always; ``profile`` → ``name``, ``preferred_username``, ``updated_at``;
``email`` → ``email``, ``email_verified``. A claim the user has no value for is left
out (§5.3.2: "If a Claim is not returned, that Claim Name SHOULD be omitted").
The token must carry ``openid`` (:data:`REQUIRED_SCOPE`); the HTTP binding
(Bearer header only) is :mod:`bastion.protocol.rfc6750`'s.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["REQUIRED_SCOPE", "SCOPE_CLAIMS", "UserInfoSource", "userinfo_claims"]

#: The scope an access token needs at the userinfo endpoint (§5.3).
REQUIRED_SCOPE: Final = "openid"
#: The claims each scope releases (§5.4), as bastion holds them.
SCOPE_CLAIMS: Final = {
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
}


@dataclass(frozen=True, slots=True)
class UserInfoSource:
    """What bastion knows of a user, as the claims need it (``updated_at`` epoch seconds)."""

    subject: str
    preferred_username: str
    name: str | None = None
    email: str | None = None
    email_verified: bool = False
    updated_at: float | None = None


def userinfo_claims(user: UserInfoSource, scope: Collection[str]) -> dict[str, Any]:
    """The UserInfo response of ``user`` for an access token with ``scope`` (§5.3.2)."""
    claims: dict[str, Any] = {"sub": user.subject}
    if "profile" in scope:
        if user.name:
            claims["name"] = user.name
        claims["preferred_username"] = user.preferred_username
        if user.updated_at is not None:
            claims["updated_at"] = int(user.updated_at)
    if "email" in scope and user.email:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims
