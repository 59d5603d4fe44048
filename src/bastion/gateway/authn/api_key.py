"""The ``api_key`` authentication method of gateway routes.

Where a key is read from:

- ``Authorization: Bearer bst_…`` (scheme case-insensitive), on every route
  that accepts ``api_key``; a Bearer token that is not a ``bst_`` key is not
  ours (a JWT, say), so the method is *not responsible* and the next one runs;
- the route's ``api_key_header`` (e.g. ``X-API-Key``) when configured: the
  header is dedicated to keys, so any value in it is verified.

Refusals:

- a key-shaped value in the query string: 400
  :class:`~bastion.apikeys.errors.ApiKeyInQueryError` (``api_key_in_query``,
  saying keys are accepted only in headers) — URLs end up in logs, browser
  history and Referer headers; the key is never looked up and is refused
  whatever else the request carries, and the pipeline checks this before
  *any* method of the route runs (:meth:`ApiKeyAuthenticator.screen`);

The rest are all :class:`~bastion.apikeys.errors.InvalidApiKeyError`, one body:

- two different keys in one request (``malformed``): which one would act?
- everything :meth:`ApiKeyService.verify` refuses (malformed, bad checksum,
  unknown, expired, revoked, disabled, grace ended; 403 for the IP allow-list).

The headers a key came in are recorded on the exchange and stripped before
the request is proxied: the upstream never sees the client's key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote_to_bytes

from bastion.apikeys.errors import ApiKeyInQueryError, InvalidApiKeyError
from bastion.gateway.authn.identity import Identity
from bastion.gateway.forwarded import client_ip
from bastion.ratelimit.gcra import Limit
from bastion.ratelimit.keys import compile_key_limits
from bastion.storage.models import ApiKey

if TYPE_CHECKING:
    from bastion.gateway.matcher import CompiledRoute
    from bastion.gateway.pipeline import Exchange

__all__ = ["ApiKeyAuthenticator", "ApiKeyVerifier", "identity_of"]

_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "
_KEY_PREFIX = b"bst_"
# Key-shaped text anywhere in a query string: the prefix, then enough key characters
# that it is not an ordinary word ("subst_x" does not count: a letter precedes it).
_KEY_IN_QUERY = re.compile(rb"(?<![0-9A-Za-z])bst_[0-9A-Za-z_]{16,}")


_IDENTITY_CACHE_MAX = 10_000


class ApiKeyVerifier(Protocol):
    """What the authenticator needs of :class:`bastion.apikeys.ApiKeyService`."""

    async def verify(
        self, key: str, *, ip: str | None = None, now: float | None = None
    ) -> ApiKey: ...


def identity_of(key: ApiKey) -> Identity:
    """The gateway identity of a verified key.

    ``subject`` is ``"{owner_type}:{owner_id}"`` for an owned key, else
    ``"apikey:{id}"``; ``routes`` is the key's route restriction (``None``
    when it has none).
    """
    if key.owner_type and key.owner_id:
        subject = f"{key.owner_type}:{key.owner_id}"
    else:
        subject = f"apikey:{key.id}"
    return Identity(
        method="api_key",
        subject=subject,
        scopes=frozenset(key.scopes),
        claims={"key_id": key.id, "key_prefix": key.prefix},
        key_id=key.id,
        routes=frozenset(key.routes) if key.routes else None,
        key_limits=_key_limits(key),
    )


def _key_limits(key: ApiKey) -> tuple[Limit, ...]:
    try:
        return compile_key_limits(key.rate_limits)
    except ValueError:
        # Validated when stored; an entry written around the service must not open
        # the gateway's error path, and the route limits still apply.
        return ()


def key_in_query(query: bytes) -> bool:
    """Whether a query string carries something shaped like a bastion key (raw or %-encoded)."""
    if _KEY_IN_QUERY.search(query):
        return True
    return b"%" in query and _KEY_IN_QUERY.search(unquote_to_bytes(query)) is not None


class ApiKeyAuthenticator:
    """Authenticates gateway requests by API key through an :class:`ApiKeyVerifier`.

    Returns an identity (allow), ``None`` when no key is presented (not
    responsible), or raises ``InvalidApiKeyError`` (401) /
    ``ApiKeyIPNotAllowedError`` (403) and whatever the verifier raises when
    its storage is down (503).
    """

    method = "api_key"

    def __init__(self, verifier: ApiKeyVerifier) -> None:
        self.verifier = verifier
        # route name -> lower-cased extra header (or None); routes are fixed per Gateway.
        self._headers: dict[str, bytes | None] = {}
        # key id -> (the record it was built from, its identity). The verifier hands out
        # the same record object until the key changes, so an identity is reused only
        # for the very record it describes (hot path: no per-request rebuild).
        self._identities: dict[str, tuple[ApiKey, Identity]] = {}

    def screen(self, ex: Exchange) -> None:
        """Refuse a key in the query string (before any method of the route runs).

        Raises :class:`ApiKeyInQueryError` (400 ``api_key_in_query``).
        """
        query = ex.scope.get("query_string")
        if query and key_in_query(query):
            raise ApiKeyInQueryError()

    def _header_for(self, route: CompiledRoute) -> bytes | None:
        try:
            return self._headers[route.name]
        except KeyError:
            name = getattr(route.settings, "api_key_header", None)
            header = name.lower().encode("latin-1") if name else None
            self._headers[route.name] = header
            return header

    async def __call__(self, ex: Exchange, /) -> Identity | None:
        self.screen(ex)
        route = ex.route
        extra = self._header_for(route) if route is not None else None
        keys: set[bytes] = set()
        carriers: set[bytes] = set()
        for raw_name, value in ex.scope.get("headers") or ():
            name = raw_name.lower()
            if name == _AUTHORIZATION:
                if value[:7].lower() == _BEARER:
                    token = value[7:].strip()
                    if token.startswith(_KEY_PREFIX):
                        keys.add(token)
                        carriers.add(name)
            elif name == extra:
                token = value.strip()
                if token:
                    keys.add(token)
                    carriers.add(name)
        if not keys:
            return None
        # Strip the carriers even when the key is refused: nothing forwards a denial,
        # but the exchange must never hold a key it would pass on.
        ex.credential_headers = frozenset(carriers)
        if len(keys) > 1:
            raise InvalidApiKeyError("malformed")
        (key,) = keys
        record = await self.verifier.verify(
            key.decode("latin-1"), ip=client_ip(ex.scope, ex.gateway.trusted_proxies)
        )
        cached = self._identities.get(record.id)
        if cached is not None and cached[0] is record:
            return cached[1]
        identity = identity_of(record)
        if len(self._identities) >= _IDENTITY_CACHE_MAX:
            self._identities.clear()
        self._identities[record.id] = (record, identity)
        return identity
