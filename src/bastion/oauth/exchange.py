"""What an API key may obtain by RFC 8693 token exchange, given the gateway's routes.

:class:`ApiKeyExchangePolicy` supplies the two hooks of the token endpoint's
:class:`bastion.apikeys.token_exchange.TokenExchangeGrant` (built in ``bastion.runtime``):

- :meth:`~ApiKeyExchangePolicy.audiences`: the issuer (bastion's default API
  audience) and the ``jwt`` audience of every gateway route the key may call
  (its ``routes``, or every route when it has none) that accepts bastion's own
  tokens (``auth`` lists ``jwt``, ``jwt.issuers`` holds ``self``; a route
  without ``jwt.audience`` takes the issuer). The admin API's audience is never
  among them, whatever a route or the key says: a key is not an admin credential.
  Read from the live route table, so ``routes reload`` applies at once.
- :meth:`~ApiKeyExchangePolicy.admit`: at most ``api_keys.exchange_rate``
  exchanges per key (bucket ``apikey-exchange:<key id>`` in the gateway's limiter,
  so one count across nodes with Redis); more raise
  :class:`~bastion.protocol.rfc8693.ExchangeRateLimitedError`. An unreachable
  shared limiter fails closed (``SharedStateUnavailableError``, 503).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, Final

from bastion.gateway.authn.jwt import SELF, route_policy
from bastion.protocol.rfc8693 import ExchangeRateLimitedError
from bastion.ratelimit import Limit, rate_limit_headers
from bastion.ratelimit.backends import Limiter
from bastion.storage.models import ApiKey

__all__ = ["EXCHANGE_BUCKET_PREFIX", "ApiKeyExchangePolicy"]

#: Bucket prefix of the per-key exchange rate (followed by the key id).
EXCHANGE_BUCKET_PREFIX: Final = "apikey-exchange:"


class ApiKeyExchangePolicy:
    """The audiences a key may obtain and the rate of its exchanges (see the module docstring).

    ``routes`` returns the gateway's current compiled routes; ``limiter`` the
    limiter to count with; ``forbidden`` are audiences never handed out.
    """

    def __init__(
        self,
        *,
        issuer: str,
        routes: Callable[[], Iterable[Any]],
        limiter: Callable[[], Limiter],
        rate: Limit,
        forbidden: Collection[str] = (),
    ) -> None:
        self.issuer = issuer
        self._routes = routes
        self._limiter = limiter
        self.rate = rate
        self.forbidden = frozenset(forbidden)

    def audiences(self, key: ApiKey) -> frozenset[str]:
        """The audiences ``key`` may obtain a token for."""
        allowed = {self.issuer}
        restricted = frozenset(key.routes) if key.routes else None
        for route in self._routes():
            if restricted is not None and route.name not in restricted:
                continue
            if "jwt" not in route.auth:
                continue
            issuers, audience = route_policy(route.settings)
            if SELF in issuers:
                allowed.add(audience if audience is not None else self.issuer)
        return frozenset(allowed - self.forbidden)

    async def admit(self, key: ApiKey) -> None:
        """Count one exchange of ``key``; raise ExchangeRateLimitedError past the rate."""
        result = await self._limiter().check([(EXCHANGE_BUCKET_PREFIX + key.id, self.rate)])
        if not result.allowed:
            retry = dict(rate_limit_headers(result)).get("Retry-After", "1")
            raise ExchangeRateLimitedError(int(retry))
