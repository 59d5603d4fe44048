"""JWT Profile for OAuth 2.0 Access Tokens — RFC 9068 §2 (https://www.rfc-editor.org/rfc/rfc9068#section-2).

bastion's access tokens are JWTs with header ``typ: at+jwt`` (§2.1) and the
claims of §2.2: ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``,
``jti`` and, when not empty, ``scope``. For the client credentials grant the
subject is the client itself (§2.2: "sub ... the client identifier").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["ACCESS_TOKEN_TYP", "REGISTERED_CLAIMS", "access_token_claims"]

#: The JWT header ``typ`` of an RFC 9068 access token (§2.1).
ACCESS_TOKEN_TYP: Final = "at+jwt"  # noqa: S105 - a media type, not a secret

#: The claims this module sets; ``extra`` may not replace them.
REGISTERED_CLAIMS: Final = frozenset(
    {"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope", "nbf"}
)


def access_token_claims(
    *,
    issuer: str,
    subject: str,
    audience: str | Sequence[str],
    client_id: str,
    scope: str,
    ttl: float,
    now: float,
    jti: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims of an RFC 9068 access token (§2.2), times in whole seconds.

    ``audience`` is one resource (a string) or several (a list of at least one);
    ``scope`` is the space-delimited granted scope (omitted when empty);
    ``extra`` adds claims such as ``auth_time``, ``acr`` or ``amr`` (§2.2.1).

    Raises:
        ValueError: ``ttl`` not positive, an empty audience, or ``extra``
            trying to replace one of the claims set here (programming errors).
    """
    if not ttl > 0:
        raise ValueError("ttl must be positive")
    aud: str | list[str] = audience if isinstance(audience, str) else list(audience)
    if not aud:
        raise ValueError("an access token needs an audience")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    issued_at = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "exp": issued_at + int(ttl),
        "aud": aud,
        "sub": subject,
        "client_id": client_id,
        "iat": issued_at,
        "jti": jti,
    }
    if scope:
        claims["scope"] = scope
    if extra:
        clash = sorted(REGISTERED_CLAIMS.intersection(extra))
        if clash:
            raise ValueError(f"extra claims may not replace {clash}")
        claims.update(extra)
    return claims
