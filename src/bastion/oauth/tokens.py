"""Access tokens: issuing RFC 9068 JWTs and verifying them, with revocation by ``jti``.

- :class:`TokenIssuer` signs access-token claims (built by
  :mod:`bastion.protocol.rfc9068`) with the signing key that is active right
  now (``typ: at+jwt``).
- :class:`AccessTokenVerifier` is what every consumer of bastion's own access
  tokens uses (introspection, revocation, the admin API, later the gateway):
  signature and claims through :class:`bastion.crypto.JWTVerifier` over the
  published key set, then two checks no signature can answer — the token's
  ``jti`` is not on the revocation deny-list in shared state, and its client
  is not disabled.

Revocation (RFC 7009) of a self-contained JWT works by deny-listing its
``jti`` in shared state until the token's own ``exp`` (plus leeway): after
that the signature check refuses it anyway, so the list never grows beyond
the set of live revoked tokens. With Redis every node sees the entry at once.
The ``jti`` is then announced on :data:`REVOKED_TOKENS_CHANNEL`, so that caches
of verified tokens (the gateway's ``jwt`` method) drop it on every node, and
handed to the listeners registered in this process (:meth:`AccessTokenVerifier.on_revoke`)
before :meth:`~AccessTokenVerifier.revoke` returns.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bastion.crypto import InvalidTokenError, JWTVerifier, PublicKeySet, SigningKeyPair, sign_jwt
from bastion.protocol.rfc9068 import ACCESS_TOKEN_TYP
from bastion.storage import feed
from bastion.storage.feed import Change
from bastion.storage.shared import SharedState

REVOKED_JTI_PREFIX = "revoked-jti:"
#: Channel carrying ``"<jti> <exp>"`` of every revoked access token (shared state and change feed).
REVOKED_TOKENS_CHANNEL = feed.REVOKED_TOKENS

ClientIsActive = Callable[[str], Awaitable[bool]]
ChangeRecorder = Callable[[list[Change]], Awaitable[None]]


class TokenIssuer:
    """Signs access-token claims with the currently active signing key."""

    def __init__(self, current_key: Callable[[], SigningKeyPair]) -> None:
        self._current_key = current_key

    async def issue(self, claims: Mapping[str, Any]) -> str:
        """Return the compact JWS of ``claims`` (``typ: at+jwt``)."""
        return sign_jwt(claims, self._current_key(), typ=ACCESS_TOKEN_TYP)


class AccessTokenVerifier:
    """Verifies bastion's own access tokens; raises ``InvalidTokenError`` with a precise reason."""

    def __init__(
        self,
        keys: Callable[[], PublicKeySet],
        *,
        issuer: str,
        shared: SharedState,
        client_is_active: ClientIsActive | None = None,
        leeway: float = 30.0,
        max_lifetime: float | None = None,
        changes: ChangeRecorder | None = None,
    ) -> None:
        self._keys = keys
        self._changes = changes
        self._issuer = issuer
        self._shared = shared
        self._client_is_active = client_is_active
        self._leeway = leeway
        self._max_lifetime = max_lifetime
        self._verifiers: dict[str | None, JWTVerifier] = {}
        self._revocation_listeners: list[Callable[[str], None]] = []

    def on_revoke(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(jti)`` in this process for every token revoked here."""
        self._revocation_listeners.append(listener)

    def _verifier(self, audience: str | None) -> JWTVerifier:
        verifier = self._verifiers.get(audience)
        if verifier is None:
            verifier = JWTVerifier(
                self._keys,
                issuer=self._issuer,
                audience=audience,
                typ=ACCESS_TOKEN_TYP,
                leeway=self._leeway,
                required_claims=("exp", "iat", "jti", "client_id", "sub"),
                max_lifetime=self._max_lifetime,
            )
            self._verifiers[audience] = verifier
        return verifier

    async def verify(
        self, token: str | bytes, *, audience: str | None = None, now: float | None = None
    ) -> Mapping[str, Any]:
        """Return the claims of a valid, unrevoked token of an enabled client.

        ``audience`` None accepts any audience (introspection reports it); every
        resource server passes its own. Raises ``InvalidTokenError``.
        """
        verified = self._verifier(audience).verify(token, now=now)
        claims = verified.claims
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise InvalidTokenError("missing_claim", "token has no usable jti")
        if await self._shared.get(REVOKED_JTI_PREFIX + jti) is not None:
            raise InvalidTokenError("revoked", "token was revoked")
        if self._client_is_active is not None and not await self._client_is_active(
            str(claims["client_id"])
        ):
            raise InvalidTokenError("client_disabled", "token's client is disabled or deleted")
        return claims

    async def client_active(self, client_id: str) -> bool:
        """Whether :meth:`verify` takes tokens of the client ``client_id`` now (its
        ``client_is_active``: a database read; without one, every client is)."""
        return self._client_is_active is None or await self._client_is_active(client_id)

    async def revoke(self, claims: Mapping[str, Any], *, now: float | None = None) -> None:
        """Deny-list the token with these (verified) claims until it would expire anyway.

        Then tell this process's listeners and announce the ``jti`` to every
        other process. Raises ``SharedStateUnavailableError`` (503) when either
        shared-state write fails, so the caller retries: a revocation that some
        node's cache did not hear of must not be reported as done.
        """
        current = time.time() if now is None else now
        exp = float(claims["exp"])
        remaining = exp - current + self._leeway
        if remaining > 0:
            jti = str(claims["jti"])
            message = f"{jti} {int(exp)}"
            if self._changes is not None:
                # Durable first: every node follows the change feed, whatever its shared state.
                await self._changes([Change(REVOKED_TOKENS_CHANNEL, message)])
            await self._shared.set(REVOKED_JTI_PREFIX + jti, b"1", ttl=remaining)
            for listener in self._revocation_listeners:
                listener(jti)
            await self._shared.publish(REVOKED_TOKENS_CHANNEL, message.encode())

    async def apply_revocation(self, message: str, *, now: float | None = None) -> None:
        """Deny-list the token a change-feed message ``"<jti> <exp>"`` names, in this node's
        shared state (with Redis it is there already; writing it again is harmless).

        Messages that do not parse are ignored: they deny nothing and grant nothing.
        """
        jti, _, exp_text = message.partition(" ")
        try:
            exp = float(exp_text)
        except ValueError:
            return
        current = time.time() if now is None else now
        remaining = exp - current + self._leeway
        if jti and remaining > 0:
            await self._shared.set(REVOKED_JTI_PREFIX + jti, b"1", ttl=remaining)
