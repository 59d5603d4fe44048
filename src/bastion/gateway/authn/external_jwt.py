"""Access tokens of trusted external issuers (RFC 9068 JWTs verified with the issuer's JWKS).

A :class:`TrustedIssuer` is one configured ``trusted_issuers`` entry: its
:class:`~bastion.gateway.authn.jwks_cache.JwksCache` and the strict
:class:`bastion.crypto.JWTVerifier` expectations — ``iss`` equal to the
issuer, ``aud`` the route's audience (else the issuer's ``audiences``),
``exp``/``nbf``/``iat`` with leeway, the issuer's ``typ`` (``at+jwt`` unless
configured otherwise, RFC 8725 §3.11), only the issuer's allowed
algorithms, ``kid`` looked up only in the fetched set.

Which issuer verifies a token is picked from the token's (unverified) ``iss``
claim by :func:`peek`: that only chooses the key set; the chosen verifier
checks ``iss`` again after the signature.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import orjson

from bastion.crypto import InvalidTokenError, JWTVerifier
from bastion.gateway.authn.jwks_cache import JwksCache

__all__ = ["DEFAULT_REQUIRED_CLAIMS", "TrustedIssuer", "peek"]

#: Tokens longer than this are refused before any parsing (JWTVerifier's own cap).
MAX_TOKEN_BYTES = 8192

#: The claims an external access token must carry (besides a matching ``iss``/``aud``).
DEFAULT_REQUIRED_CLAIMS: tuple[str, ...] = ("exp", "sub")


def _segment(raw: str, what: str) -> dict[str, Any]:
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        value = orjson.loads(data)
    except (binascii.Error, ValueError):
        raise InvalidTokenError("malformed", f"the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError("malformed", f"the {what} is not a JSON object")
    return value


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The UNVERIFIED header and claims of a compact JWS — only to pick the verifier.

    Raises :class:`InvalidTokenError` (``too_large`` / ``malformed``).
    """
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidTokenError("too_large", "token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("malformed", "a JWS has exactly three dot-separated parts")
    return _segment(parts[0], "header"), _segment(parts[1], "payload")


class TrustedIssuer:
    """One external issuer: its JWKS cache and a strict verifier per audience."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        audiences: Sequence[str],
        typ: str | None = "at+jwt",
        leeway: float = 30.0,
        required_claims: Collection[str] = DEFAULT_REQUIRED_CLAIMS,
    ) -> None:
        if not audiences:
            raise ValueError("a trusted issuer needs at least one audience")
        self.issuer = jwks.issuer
        self.jwks = jwks
        self.audiences = tuple(audiences)
        self._typ = typ
        self._leeway = leeway
        self._required = tuple(required_claims)
        self._verifiers: dict[str | None, JWTVerifier] = {}

    def _verifier(self, audience: str | None) -> JWTVerifier:
        verifier = self._verifiers.get(audience)
        if verifier is None:
            verifier = JWTVerifier(
                self.jwks.current,
                issuer=self.issuer,
                audience=audience if audience is not None else self.audiences,
                typ=self._typ,
                leeway=self._leeway,
                required_claims=self._required,
                # Other signers (Java, OpenSSL) need not produce low-S ES256 signatures;
                # revocation and caching go by jti and digest, so a twin gains nothing.
                allow_high_s=True,
            )
            self._verifiers[audience] = verifier
        return verifier

    async def verify(
        self, token: str, header: Mapping[str, Any], *, audience: str | None = None
    ) -> Mapping[str, Any]:
        """The claims of a valid token of this issuer for ``audience`` (None: its audiences).

        ``header`` is the token's unverified header (from :func:`peek`): its
        ``kid``, when the cached set lacks it, triggers a rate-limited refetch.
        Raises :class:`InvalidTokenError` or
        :class:`~bastion.gateway.authn.jwks_cache.JwksUnavailableError` (503).
        """
        keys = await self.jwks.get()
        kid = header.get("kid")
        if isinstance(kid, str) and kid not in keys:
            await self.jwks.refresh_for_kid(kid)
        return self._verifier(audience).verify(token).claims
