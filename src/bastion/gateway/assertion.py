"""The signed identity assertion the ``mutate`` step sends upstream (DESIGN.md, pipeline step 5).

A short-lived JWT (RFC 7519) signed with bastion's current token-signing key
(the same keys as ``/oauth2/jwks.json``), header ``typ: bastion-assertion+jwt``
so it can never be mistaken for an access token (RFC 8725 §3.11: explicit
typing). Claims:

- ``iss`` bastion's issuer; ``aud`` the route's upstream URL (or the route's
  ``assertion_audience``): an assertion captured at one upstream is useless at
  another;
- ``sub``, ``client_id`` (when known), ``scope`` (space-separated, sorted),
  ``key_id`` (when an API key vouched), ``auth_method``;
- ``iat``, ``exp`` (``iat + ttl``, at most 60 s), ``jti`` (unique), ``route``,
  ``request_id``.

Upstreams verify it like any JWT against bastion's JWKS, checking ``iss``,
``aud``, ``exp`` and ``typ`` (docs/gateway-auth.md shows Python and Node).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from bastion.crypto import SigningKeyPair, sign_jwt
from bastion.gateway.authn.identity import Identity

__all__ = ["ASSERTION_TYP", "AssertionSigner"]

ASSERTION_TYP = "bastion-assertion+jwt"


class AssertionSigner:
    """Signs identity assertions with the key ``current_key`` returns (called per assertion).

    Raises ``ValueError`` for a ``ttl`` outside 1 to 60 seconds.
    """

    __slots__ = ("_clock", "_current_key", "header", "issuer", "ttl")

    def __init__(
        self,
        current_key: Callable[[], SigningKeyPair],
        *,
        issuer: str,
        ttl: float = 30.0,
        header: str = "X-Bastion-Assertion",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 1 <= ttl <= 60:
            raise ValueError("an identity assertion lives 1 to 60 seconds")
        self._current_key = current_key
        self.issuer = issuer
        self.ttl = ttl
        self.header = header
        self._clock = clock

    def claims(
        self, identity: Identity, *, audience: str, route: str, request_id: str | None
    ) -> dict[str, Any]:
        """The assertion's claims for ``identity`` on ``route`` (see the module docstring)."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "sub": identity.subject,
            "iat": now,
            "exp": now + int(self.ttl),
            "jti": uuid.uuid4().hex,
            "route": route,
            "auth_method": identity.method,
            "scope": " ".join(sorted(identity.scopes)),
        }
        client = identity.claims.get("client_id")
        if isinstance(client, str) and client:
            claims["client_id"] = client
        if identity.key_id:
            claims["key_id"] = identity.key_id
        if request_id:
            claims["request_id"] = request_id
        return claims

    def sign(self, identity: Identity, *, audience: str, route: str, request_id: str | None) -> str:
        """The compact JWS of the assertion for ``identity``."""
        claims = self.claims(identity, audience=audience, route=route, request_id=request_id)
        return sign_jwt(claims, self._current_key(), typ=ASSERTION_TYP)
