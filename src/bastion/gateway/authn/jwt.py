"""The ``jwt`` authentication method of gateway routes: bastion's own and trusted issuers' tokens.

Where a token is read from: ``Authorization: Bearer <JWT>`` (scheme
case-insensitive). What is *not* this method's business (not responsible, so
the next accepted method runs): no ``Authorization`` header, another scheme,
a ``bst_`` API key, and a dot-free (opaque) token — those belong to
``api_key`` and, later, ``introspection``.

Verification is delegated to an :class:`AccessTokenVerifierLike` (in
production :class:`bastion.oauth.tokens.AccessTokenVerifier`: signature,
``iss``/``aud``/``exp``/``nbf``/``typ``, the ``jti`` deny-list, the client's
status). Tokens whose ``iss`` names a configured trusted issuer go to that
issuer's :class:`~bastion.gateway.authn.external_jwt.TrustedIssuer` instead (its
JWKS, its audiences). A route's ``jwt.issuers`` says which issuers it accepts
(default: ``self`` only) and ``jwt.audience`` which ``aud``; without one, own
tokens must be for :attr:`JwtAuthenticator.default_audience` (the runtime
passes the issuer URL, bastion's default API audience; ``None`` accepts any)
and external ones for their issuer's ``audiences``.

Verified tokens are cached by the SHA-256 digest of the token (and the
audience asked for) until ``min(exp, now + 60 s)`` in a bounded in-memory
dict (DESIGN.md, "Hot path"): an ES256 verification costs ~150 µs, a dict
lookup nothing. Revocation is still honoured on a cache hit, without a
shared-state read per request: :meth:`AccessTokenVerifier.revoke
<bastion.oauth.tokens.AccessTokenVerifier.revoke>` deny-lists the ``jti`` and
announces it on the channel ``revoked-tokens`` (shared state and the change feed);
every process following it (:meth:`JwtAuthenticator.run`) drops the cached
entries of that ``jti`` at once, so the next request verifies the token again
and meets the deny-list. Likewise a change to an OAuth client (disabled,
deleted) drops its tokens' entries, a change to an API key (channel
``"api-keys"``: revoked, disabled, its limits or routes changed) drops the
tokens exchanged from it, and a signing-key change (channel ``"signing-keys"``,
e.g. an emergency retirement) or a ``routes reload``
(:meth:`JwtAuthenticator.routes_changed`, which also forgets the per-route
``jwt`` policies) drops everything. While the revocation channel is not
followed (not yet subscribed, or the subscription to Redis was lost, noticed
within the connection's health-check interval) every cache hit reads the
deny-list again instead (one ``shared.get``, fail closed), as before.

Tokens exchanged from an API key (RFC 8693; ``client_id`` ``apikey:<id>``)
act as that key: the identity carries its ``key_id``, its rate limits and its
route restriction, read from :attr:`JwtAuthenticator.api_keys` (the key
service's cache), so the ``limit`` step counts them in the key's own buckets
and ``authorize`` confines them to the key's routes. A key that is no longer
usable, or no key lookup configured, refuses the token (fail closed).

Every refusal is :class:`InvalidBearerTokenError`: 401, ``WWW-Authenticate:
Bearer realm="bastion", error="invalid_token"``, one collapsed body; the
precise reason stays on the exception (``reason``) for the audit log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bastion.apikeys.state import API_KEY_CLIENT_PREFIX, key_is_usable
from bastion.apikeys.token_exchange import KEY_ID_CLAIM, ApiKeyLookup
from bastion.crypto import InvalidTokenError, sha256_hex
from bastion.gateway import native_push
from bastion.gateway.authn.external_jwt import TrustedIssuer, peek
from bastion.gateway.authn.identity import Identity
from bastion.gateway.errors import UnauthenticatedError
from bastion.oauth.tokens import REVOKED_JTI_PREFIX
from bastion.ratelimit.keys import compile_key_limits
from bastion.settings import RouteSettings
from bastion.storage import feed
from bastion.storage.errors import NotFoundError
from bastion.storage.shared import SharedState
from bastion.storage.shared.invalidation import follow_invalidations

__all__ = [
    "AccessTokenVerifierLike",
    "InvalidBearerTokenError",
    "JwtAuthenticator",
    "identity_of_claims",
]


# The channels the cache follows (run()); cache hits skip the deny-list read only while
# every one of them is subscribed.
_FOLLOWED = frozenset({feed.API_KEYS, feed.SIGNING_KEYS, feed.REVOKED_TOKENS, feed.CLIENTS})

DEFAULT_CACHE_SIZE = 10_000
DEFAULT_CACHE_TTL = 60.0


class InvalidBearerTokenError(UnauthenticatedError):
    """The bearer token was refused (RFC 6750 §3.1 ``invalid_token``).

    Outward every refusal looks the same; ``reason`` is the precise cause
    (``expired``, ``bad_signature``, ``revoked``, ``wrong_typ``, ``malformed`` …,
    see :class:`bastion.crypto.InvalidTokenError`) and is not rendered.
    """

    code = "invalid_token"
    status = 401
    title = "Invalid token"
    www_authenticate = 'Bearer realm="bastion", error="invalid_token"'

    def __init__(self, reason: str) -> None:
        super().__init__("The access token is invalid, expired or revoked.")
        self.reason = reason


class AccessTokenVerifierLike(Protocol):
    """What the authenticator needs of :class:`bastion.oauth.tokens.AccessTokenVerifier`."""

    async def verify(self, token: str, *, audience: str | None = None) -> Mapping[str, Any]: ...


def identity_of_claims(claims: Mapping[str, Any]) -> Identity:
    """The gateway identity of verified access-token claims.

    ``subject`` is ``sub``; ``scopes`` the space-separated ``scope`` claim;
    ``claims`` all of them (``client_id`` among them).

    Raises :class:`InvalidBearerTokenError` (``invalid_claim``) when ``sub`` is
    not a non-empty string or ``scope`` is not a string.
    """
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise InvalidBearerTokenError("invalid_claim")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidBearerTokenError("invalid_claim")
    return Identity(
        method="jwt",
        subject=sub,
        scopes=frozenset(scope.split()),
        claims=dict(claims),
    )


class _Entry:
    __slots__ = ("identity", "issuer", "jti", "until")

    def __init__(self, identity: Identity, jti: str, until: float, issuer: str) -> None:
        self.identity = identity
        self.jti = jti
        self.until = until
        self.issuer = issuer


#: The label of bastion's own tokens in a route's ``jwt.issuers``.
SELF = "self"
_ONLY_SELF = frozenset({SELF})


def route_policy(route: RouteSettings) -> tuple[frozenset[str], str | None]:
    """The issuers (``self`` and/or issuer URLs) and the audience a route's ``jwt`` accepts.

    Without ``jwt`` settings: bastion's own tokens, for the caller's default audience (``None``).
    """
    jwt = route.jwt
    if jwt is None:
        return _ONLY_SELF, None
    return frozenset(jwt.issuers), jwt.audience


class JwtAuthenticator:
    """Authenticates gateway requests by bastion's own JWT access tokens.

    Returns an identity (allow), ``None`` when the request carries no JWT
    bearer token (not responsible), or raises :class:`InvalidBearerTokenError`
    (401). When shared state is unreachable the verifier's / shared state's
    ``SharedStateUnavailableError`` (503) propagates: fail closed.

    ``shared`` is the shared state holding the ``jti`` deny-list (the one the
    verifier reads); ``cache_size`` bounds the verified-token cache,
    ``cache_ttl`` caps how long an entry lives; ``clock`` gives Unix seconds.
    """

    method = "jwt"

    def __init__(
        self,
        verifier: AccessTokenVerifierLike,
        *,
        shared: SharedState,
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        clock: Callable[[], float] = time.time,
        issuer: str | None = None,
        default_audience: str | None = None,
        trusted_issuers: Mapping[str, TrustedIssuer] | None = None,
        api_keys: ApiKeyLookup | None = None,
    ) -> None:
        if cache_size < 0 or cache_ttl < 0:
            raise ValueError("cache_size and cache_ttl must not be negative")
        self.verifier = verifier
        # bastion's own iss (never dispatched to an external issuer, whatever is configured).
        self.issuer = issuer
        self.default_audience = default_audience
        self.trusted_issuers: Mapping[str, TrustedIssuer] = dict(trusted_issuers or {})
        # The key records behind tokens exchanged from API keys (None: such tokens refused).
        self.api_keys = api_keys
        self._policies: dict[str, tuple[frozenset[str], str | None]] = {}
        self.shared = shared
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self._clock = clock
        # (token digest, audience) -> entry; insertion order = age, for eviction.
        self._cache: dict[tuple[str, str | None], _Entry] = {}
        # jti -> its cache keys (one per audience asked for): a revocation drops them in O(1).
        self._by_jti: dict[str, set[tuple[str, str | None]]] = {}
        # True while the revocation channel is followed (run()): cache hits then need
        # no deny-list read. Bumped by every invalidation, so a verification that was
        # in flight while one arrived does not cache what may just have been revoked.
        self._following = False
        self._open_channels: set[str] = set()
        self._epoch = 0

    def __len__(self) -> int:
        """The number of cached verified tokens."""
        return len(self._cache)

    @property
    def following(self) -> bool:
        """Whether revocations arrive by the channel (cache hits skip the deny-list read)."""
        return self._following

    def clear(self) -> None:
        """Forget every cached token (e.g. after a signing key was retired)."""
        self._epoch += 1
        self._cache.clear()
        self._by_jti.clear()
        native_push.tokens_cleared()

    def forget(self, jti: str | None) -> None:
        """Drop the cached entries of the token ``jti`` (every entry when ``None``).

        Also takes a revocation message ``"<jti> <exp>"`` as announced.
        """
        if jti is None:
            self.clear()
            return
        native_push.token_revoked(jti)
        jti = jti.partition(" ")[0]
        self._epoch += 1
        for key in self._by_jti.pop(jti, ()):
            self._cache.pop(key, None)

    def forget_client(self, client_id: str | None) -> None:
        """Drop the cached tokens of the OAuth client ``client_id`` (every entry when ``None``).

        A scan: client changes are rare admin actions, unlike revocations.
        """
        if client_id is None:
            self.clear()
            return
        native_push.client_changed(client_id)
        self._epoch += 1
        for key, entry in list(self._cache.items()):
            if entry.identity.claims.get("client_id") == client_id:
                self._drop(key, entry)

    def forget_key(self, key_id: str | None) -> None:
        """Drop the cached tokens exchanged from the API key ``key_id`` (all when ``None``).

        A scan, like :meth:`forget_client`: key changes are rare next to requests.
        """
        if key_id is None:
            self.clear()
            return
        self.forget_client(API_KEY_CLIENT_PREFIX + key_id)

    def forget_all(self, _message: str | None = None) -> None:
        """Forget every cached token, whatever the message (a signing-key change)."""
        self.clear()
        native_push.signing_keys_changed()

    def routes_changed(self) -> None:
        """After a routes reload: forget the per-route policies and every cached token.

        Entries were cached under the old routes' audiences; a changed
        ``jwt.audience`` or ``jwt.issuers`` must apply to the next request.
        """
        self._policies = {}
        self.clear()

    def _subscribed(self, channel: str) -> Callable[[bool], None]:
        # Following only while every channel is: a subscription opening drops the whole
        # cache (messages may have been missed), and until then hits read the deny-list.
        def on_subscribed(subscribed: bool) -> None:
            if subscribed:
                self._open_channels.add(channel)
            else:
                self._open_channels.discard(channel)
            self._following = self._open_channels >= _FOLLOWED
            native_push.following(self._following)

        return on_subscribed

    async def run(self, stop: asyncio.Event, *, backoff: float = 1.0) -> None:
        """Follow revocations and client, API-key and signing-key changes until ``stop``."""
        handlers: dict[str, Callable[[str | None], None]] = {
            feed.API_KEYS: self.forget_key,
            feed.SIGNING_KEYS: self.forget_all,
            feed.REVOKED_TOKENS: self.forget,
            feed.CLIENTS: self.forget_client,
        }
        await asyncio.gather(
            *(
                follow_invalidations(
                    self.shared,
                    channel,
                    handler,
                    stop,
                    backoff=backoff,
                    on_subscribed=self._subscribed(channel),
                )
                for channel, handler in handlers.items()
            )
        )

    def _drop(self, key: tuple[str, str | None], entry: _Entry) -> None:
        self._cache.pop(key, None)
        keys = self._by_jti.get(entry.jti)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_jti[entry.jti]

    async def authenticate(
        self,
        token: str,
        *,
        audience: str | None = None,
        issuers: frozenset[str] = _ONLY_SELF,
    ) -> Identity:
        """The identity of a valid ``token`` for ``audience``, from the cache or verified now.

        ``issuers`` are the accepted issuers: ``self`` (bastion's own tokens) and/or
        URLs of :attr:`trusted_issuers`. ``audience`` None means the default: for
        own tokens :attr:`default_audience` (any audience when that is None too),
        for external ones the issuer's configured audiences.

        Raises :class:`InvalidBearerTokenError`, or
        :class:`~bastion.gateway.authn.jwks_cache.JwksUnavailableError` (503)
        when an external issuer's keys were never fetchable.
        """
        now = self._clock()
        key = (sha256_hex(token.encode("ascii")), audience)
        entry = self._cache.get(key)
        if entry is not None and entry.issuer not in issuers:
            raise InvalidBearerTokenError("wrong_issuer")
        if entry is not None:
            if now < entry.until:
                # Hot path: while the revocation channel is followed a revocation has
                # already dropped this entry, so no shared-state read (a Redis round
                # trip in cluster mode) is needed; without a jti nothing can be revoked.
                if self._following or not entry.jti:
                    return entry.identity
                if await self.shared.get(REVOKED_JTI_PREFIX + entry.jti) is not None:
                    self._drop(key, entry)
                    raise InvalidBearerTokenError("revoked")
                return entry.identity
            self._drop(key, entry)
        epoch = self._epoch
        label = SELF
        try:
            if self.trusted_issuers:
                header, unverified = peek(token)
                iss = unverified.get("iss")
                if isinstance(iss, str) and iss != self.issuer and iss in self.trusted_issuers:
                    label = iss
            if label not in issuers:
                raise InvalidBearerTokenError("wrong_issuer")
            if label == SELF:
                claims = await self.verifier.verify(
                    token, audience=audience if audience is not None else self.default_audience
                )
            else:
                claims = await self.trusted_issuers[label].verify(token, header, audience=audience)
                jti = claims.get("jti")
                if (
                    isinstance(jti, str)
                    and jti
                    and await self.shared.get(REVOKED_JTI_PREFIX + jti) is not None
                ):
                    raise InvalidBearerTokenError("revoked")
        except InvalidTokenError as exc:
            raise InvalidBearerTokenError(exc.reason) from None
        identity = identity_of_claims(claims)
        if label == SELF:
            identity = await self._as_key(identity, claims)
        if epoch == self._epoch:  # no invalidation arrived while verifying
            self._remember(key, identity, claims, now, label)
            if label == SELF and identity.key_id is None and self.cache_size:
                # The native data plane serves this token from now on (it verifies
                # it again).
                native_push.token_verified(token, self.cache_ttl)
                client_id = claims.get("client_id")
                if isinstance(client_id, str) and client_id:
                    native_push.client_active(client_id, self.cache_ttl)
            elif label == SELF and self.cache_size:
                # Exchanged from an API key: cached natively as that key's (its id,
                # routes and limits), dropped by the key's next change.
                native_push.token_exchanged(token, self.cache_ttl, identity)
        return identity

    async def look_up_client(self, client_id: str) -> bool:
        """The native core's ``client`` lookup: whether the OAuth client ``client_id`` is
        active (the verifier's own read), pushed for ``cache_ttl`` — active, or disabled
        or deleted — unless a change of a client arrived meanwhile (then nothing is).

        Raises :class:`LookupError` for a verifier that cannot tell.
        """
        is_active = getattr(self.verifier, "client_active", None)
        if is_active is None:
            raise LookupError("the access-token verifier reads no client status")
        epoch = self._epoch
        active = bool(await is_active(client_id))
        if epoch == self._epoch and self.cache_size:
            push = native_push.client_active if active else native_push.client_inactive
            push(client_id, self.cache_ttl)
        return active

    async def _as_key(self, identity: Identity, claims: Mapping[str, Any]) -> Identity:
        """For a token exchanged from an API key: the identity with the key's
        id, limits and route restriction (the key must still be usable)."""
        client_id = claims.get("client_id")
        if not isinstance(client_id, str) or not client_id.startswith(API_KEY_CLIENT_PREFIX):
            if KEY_ID_CLAIM in claims:
                raise InvalidBearerTokenError("invalid_claim")
            return identity
        key_id = client_id[len(API_KEY_CLIENT_PREFIX) :]
        if claims.get(KEY_ID_CLAIM, key_id) != key_id:
            raise InvalidBearerTokenError("invalid_claim")
        if self.api_keys is None or not key_id:
            raise InvalidBearerTokenError("client_disabled")
        try:
            key = await self.api_keys.get_cached(key_id)
        except NotFoundError:
            raise InvalidBearerTokenError("client_disabled") from None
        if not key_is_usable(key, self._clock()):
            raise InvalidBearerTokenError("client_disabled")
        try:
            limits = compile_key_limits(key.rate_limits)
        except ValueError:
            limits = ()  # validated when stored (as for the api_key method)
        return dataclasses.replace(
            identity,
            key_id=key.id,
            routes=frozenset(key.routes) if key.routes else None,
            key_limits=limits,
        )

    def _remember(
        self,
        key: tuple[str, str | None],
        identity: Identity,
        claims: Mapping[str, Any],
        now: float,
        issuer: str = SELF,
    ) -> None:
        if self.cache_size == 0:
            return
        jti = claims.get("jti")
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            return  # no end: never cache
        if not isinstance(jti, str) or not jti:
            if issuer == SELF:
                return  # own tokens always carry a jti; without one, nothing to revoke by
            jti = ""
        until = min(float(exp), now + self.cache_ttl)
        if until <= now:
            return
        cache = self._cache
        # Entries live at most cache_ttl, so insertion order is close to expiry order:
        # evicting the oldest is O(1) and drops what expires soonest.
        while len(cache) >= self.cache_size:
            oldest = next(iter(cache))
            self._drop(oldest, cache[oldest])
        previous = cache.pop(key, None)
        if previous is not None:
            self._drop(key, previous)
        cache[key] = _Entry(identity, jti, until, issuer)
        if jti:
            self._by_jti.setdefault(jti, set()).add(key)
