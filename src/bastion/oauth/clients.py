"""OAuth 2.0 client registry: create, change, rotate secrets, authenticate (RFC 6749 §2).

:class:`ClientService` is what the CLI, the admin API and the token endpoint
use. It validates client metadata (:class:`ClientSpec`, whose rules are
:mod:`bastion.oauth.client_spec`'s), generates client ids
and secrets, keeps secrets only as SHA-256 digests and authenticates presented
secrets in constant time.

Client secrets look like ``bcs_`` + 43 base64url characters (256 random bits);
they are returned once, by :meth:`ClientService.create` and
:meth:`ClientService.rotate_secret`, and stored as their SHA-256 hex digest
plus an 8-character display prefix. A rotation keeps the previous secrets
working for a grace period (``tokens.client_secret_grace`` by default).

:meth:`ClientService.find_active` and :meth:`ClientService.authenticate_secret`
serve the hot path from an in-memory cache (a few seconds,
:class:`~bastion.credentials.cache.CachedLookup`) that every mutation
invalidates — in this process at once, in the others through the change
feed's channel ``"clients"``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from datetime import datetime, timedelta
from typing import Any, Final

from bastion.credentials.cache import CachedLookup, ChangeChannel
from bastion.credentials.validation import MAX_NAME, storable
from bastion.crypto import constant_time_equals, sha256_hex
from bastion.oauth.client_spec import (
    AUTH_METHODS,
    AVAILABLE_GRANT_TYPES,
    CHECKS,
    GRANT_TYPES,
    SECRET_METHODS,
    UNAVAILABLE_GRANT_TYPES,
    UPDATABLE,
    ClientSpec,
    ClientSpecError,
    spec_values,
    validated,
)
from bastion.protocol.rfc6749.errors import InvalidClientError
from bastion.storage import Client, ClientSecret, Database, NotFoundError, Page, feed
from bastion.storage.models import utcnow
from bastion.storage.shared import SharedState

# AUTH_METHODS … ClientSpecError are the client's metadata rules (bastion.oauth.client_spec),
# re-exported: this module is where callers have always found them.
__all__ = [
    "AUTH_METHODS",
    "AVAILABLE_GRANT_TYPES",
    "CACHE_TTL",
    "CLIENTS_CHANNEL",
    "CLIENT_SECRET_PREFIX",
    "GRANT_TYPES",
    "MIN_DIGEST_COMPARISONS",
    "SECRET_METHODS",
    "UNAVAILABLE_GRANT_TYPES",
    "ClientService",
    "ClientSpec",
    "ClientSpecError",
    "generate_client_id",
    "generate_client_secret",
]

log = logging.getLogger("bastion.oauth.clients")

#: Shared-state channel on which client ids whose cached record is stale are published.
CLIENTS_CHANNEL: Final = feed.CLIENTS

CLIENT_SECRET_PREFIX: Final = "bcs_"  # noqa: S105 - a format prefix, not a secret
#: Characters of a secret shown in listings ("bcs_" + 4): enough to tell secrets apart.
SECRET_DISPLAY_PREFIX_LENGTH: Final = 8
_SECRET_BYTES: Final = 32  # 256 bits -> 43 base64url characters

#: Client ids: 22 base62 characters (~131 bits). Base62 rather than base64url so an id
#: never starts with "-" (which a command line would take for an option).
_CLIENT_ID_ALPHABET: Final = string.ascii_letters + string.digits
_CLIENT_ID_LENGTH: Final = 22

#: Every authentication compares at least this many digests (the current secret and
#: one in its grace period), so an unknown client costs what a known one does.
MIN_DIGEST_COMPARISONS: Final = 2
_DUMMY_DIGEST: Final = sha256_hex(b"bastion: no such client secret")

#: Seconds a find_active answer is reused before the database is asked again.
CACHE_TTL: Final = 5.0
_CACHE_MAX_ENTRIES: Final = 10_000


def generate_client_id() -> str:
    """A new random client id: 22 base62 characters (not sequential, not guessable)."""
    return "".join(secrets.choice(_CLIENT_ID_ALPHABET) for _ in range(_CLIENT_ID_LENGTH))


def generate_client_secret() -> str:
    """A new client secret: ``bcs_`` + 43 base64url characters (256 bits from the OS CSPRNG)."""
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def _storable_id(client_id: object) -> bool:
    """Whether ``client_id`` can name a stored client at all.

    Ids arrive from requests (HTTP Basic, form fields); a NUL or a lone surrogate
    would make the database driver fail instead of simply finding nothing.
    """
    return isinstance(client_id, str) and 0 < len(client_id) <= MAX_NAME and storable(client_id)


# ---------------------------------------------------------------------------
# the service


class ClientService:
    """Registered OAuth clients: lifecycle, secrets and authentication.

    ``settings`` is bastion's :class:`~bastion.settings.Settings` (``tokens``
    section). Every method may raise the storage errors
    (``DatabaseUnavailableError`` …) of the database it works on.
    """

    def __init__(self, db: Database, settings: Any, shared: SharedState) -> None:
        self.db = db
        self.settings = settings
        self.shared = shared
        # client_id -> (client or None, its secrets): what authenticate_secret and
        # find_active need, so a token request costs no database round trip (DESIGN:
        # hot paths read memory); unknown ids are cached too, the cache is bounded.
        self._records: CachedLookup[str, tuple[Client | None, tuple[ClientSecret, ...]]] = (
            CachedLookup(self._read, ttl=lambda: CACHE_TTL, max_entries=_CACHE_MAX_ENTRIES)
        )
        self._changes = ChangeChannel(
            shared, CLIENTS_CHANNEL, self.invalidate, noun="client", log=log
        )

    # -- reads ------------------------------------------------------------

    async def get(self, client_id: str) -> Client:
        """The client (disabled ones too); raises ``NotFoundError``."""
        return await self.db.clients.get(self._known_form(client_id))

    async def list(self, *, limit: int = 100, cursor: str | None = None) -> Page[Client]:
        """Clients ordered by client_id; raises ``InvalidCursorError`` for a foreign cursor."""
        return await self.db.clients.list(limit=limit, cursor=cursor)

    async def list_secrets(self, client_id: str) -> tuple[ClientSecret, ...]:
        """The client's stored secrets (digests and prefixes) in creation order."""
        if not _storable_id(client_id):
            return ()
        return await self.db.clients.list_secrets(client_id)

    # -- lifecycle --------------------------------------------------------

    async def create(
        self, spec: ClientSpec, *, now: datetime | None = None
    ) -> tuple[Client, str | None]:
        """Register a client; return it with its secret (``None`` without a secret method).

        The secret is shown here once and never again.

        Raises:
            ClientSpecError: the spec is invalid (the error names the field and the fix).
        """
        offered = self.settings.signing_keys.id_token_algorithms
        values = validated(spec_values(spec), self._max_ttl, id_token_algs=offered)
        # Registered explicitly, so a later change of the server's default does not
        # switch the algorithm under a working relying party.
        values["id_token_signed_response_alg"] = (
            values["id_token_signed_response_alg"] or offered[0]
        )
        at = now or utcnow()
        client = Client(client_id=generate_client_id(), created_at=at, updated_at=at, **values)
        client = await self.db.clients.create(client)
        secret: str | None = None
        if client.token_endpoint_auth_method in SECRET_METHODS:
            secret = await self._add_secret(client.client_id, at)
        await self._invalidate(client.client_id)
        log.info("client %s created (%s)", client.client_id, client.token_endpoint_auth_method)
        return client, secret

    async def update(self, client_id: str, **changes: Any) -> Client:
        """Change the named members and return the updated client.

        Updatable: name, token_endpoint_auth_method, grant_types, scopes, audiences,
        access_token_ttl, redirect_uris, jwks, metadata, id_token_signed_response_alg,
        post_logout_redirect_uris, backchannel_logout_uri, backchannel_logout_session_required.
        The client type cannot change (create a new client instead); disable/enable have their
        own methods. Switching to a secret method from another one leaves the client without a
        secret until :meth:`rotate_secret` issues one.

        Raises:
            NotFoundError: no such client.
            ClientSpecError: an unknown member, or the result is invalid.
        """
        unknown = sorted(set(changes) - UPDATABLE)
        if unknown:
            hint = (
                "create a new client instead"
                if "client_type" in unknown
                else f"updatable: {', '.join(sorted(UPDATABLE))}"
            )
            raise ClientSpecError(unknown[0], f"cannot be changed — {hint}")
        current = await self.db.clients.get(self._known_form(client_id))
        merged = {
            "name": current.name,
            "client_type": current.client_type,
            "token_endpoint_auth_method": current.token_endpoint_auth_method,
            "grant_types": current.grant_types,
            "scopes": current.scopes,
            "audiences": current.audiences,
            "access_token_ttl": current.access_token_ttl,
            "redirect_uris": current.redirect_uris,
            "jwks": current.jwks,
            "metadata": current.metadata,
            "id_token_signed_response_alg": current.id_token_signed_response_alg,
            "post_logout_redirect_uris": current.post_logout_redirect_uris,
            "backchannel_logout_uri": current.backchannel_logout_uri,
            "backchannel_logout_session_required": current.backchannel_logout_session_required,
        }
        merged.update(changes)
        values = validated(
            merged,
            self._max_ttl,
            held=current.grant_types,
            id_token_algs=self.settings.signing_keys.id_token_algorithms,
            held_id_token_alg=current.id_token_signed_response_alg,
        )
        delta = {key: values[key] for key in changes}
        if not delta:
            return current
        client = await self.db.clients.update(client_id, **delta)
        await self._invalidate(client_id)
        log.info("client %s updated: %s", client_id, ", ".join(sorted(delta)))
        return client

    async def disable(self, client_id: str) -> Client:
        """Disable the client: it can no longer authenticate. Raises ``NotFoundError``."""
        client = await self.db.clients.update(self._known_form(client_id), disabled=True)
        await self._invalidate(client_id)
        log.info("client %s disabled", client_id)
        return client

    async def enable(self, client_id: str) -> Client:
        """Enable a disabled client again. Raises ``NotFoundError``."""
        client = await self.db.clients.update(self._known_form(client_id), disabled=False)
        await self._invalidate(client_id)
        log.info("client %s enabled", client_id)
        return client

    async def delete(self, client_id: str) -> None:
        """Delete the client with its secrets, grants and tokens. Raises ``NotFoundError``."""
        await self.db.clients.delete(self._known_form(client_id))
        await self._invalidate(client_id)
        log.info("client %s deleted", client_id)

    async def rotate_secret(
        self, client_id: str, *, grace: float | None = None, now: datetime | None = None
    ) -> str:
        """Issue a new secret; the previous ones keep working for ``grace`` seconds.

        ``grace`` defaults to ``tokens.client_secret_grace``; 0 ends the old secrets
        at once. Secrets whose grace period is already over are deleted. Returns
        the new secret (shown once).

        Raises:
            NotFoundError: no such client.
            ClientSpecError: the client does not authenticate with a secret, or
                ``grace`` is negative or not finite.
        """
        if grace is None:
            grace = float(self.settings.tokens.client_secret_grace)
        grace = CHECKS.grace(grace)
        client = await self.db.clients.get(self._known_form(client_id))
        if client.token_endpoint_auth_method not in SECRET_METHODS:
            raise ClientSpecError(
                "token_endpoint_auth_method",
                f"client {client_id} authenticates with {client.token_endpoint_auth_method} "
                "and has no secret; switch it to client_secret_basic or client_secret_post first",
            )
        at = now or utcnow()
        ends = at + timedelta(seconds=grace)
        for old in await self.db.clients.list_secrets(client_id):
            if old.expires_at is not None and old.expires_at <= at:
                await self.db.clients.delete_secret(old.id)
            elif old.expires_at is None or old.expires_at > ends:
                await self.db.clients.set_secret_expiry(old.id, ends)
        secret = await self._add_secret(client_id, at)
        await self.db.clients.update(client_id, updated_at=at)
        await self._invalidate(client_id)
        log.info("client %s: secret rotated (grace %gs)", client_id, grace)
        return secret

    # -- authentication ---------------------------------------------------

    async def authenticate_secret(
        self,
        client_id: str,
        secret: str,
        *,
        method: str | None = None,
        now: datetime | None = None,
    ) -> Client:
        """Return the client when ``secret`` is one of its current secrets.

        Constant-time: the presented secret's digest is compared with every
        stored digest (at least :data:`MIN_DIGEST_COMPARISONS`, padding with a
        dummy digest) without stopping at a match, and an unknown client costs
        the same lookups and comparisons as a known one. ``method``, when given,
        is the method the request used; it must be the client's registered one.

        Raises:
            InvalidClientError: always with the same description
                ("client authentication failed"); ``reason`` is one of
                ``unknown_client``, ``bad_secret``, ``secret_expired``,
                ``client_disabled``, ``wrong_auth_method`` (for the audit log).
        """
        at = now or utcnow()
        presented = sha256_hex(secret.encode("utf-8", "surrogatepass"))
        client: Client | None = None
        stored: tuple[ClientSecret, ...] = ()
        # An id no client can have is refused without asking the database (which could
        # choke on it); it reveals nothing about which clients exist.
        if _storable_id(client_id):
            client, stored = await self._records.get(client_id)
        candidates: list[ClientSecret | None] = list(stored)
        candidates.extend([None] * max(0, MIN_DIGEST_COMPARISONS - len(candidates)))
        matched: ClientSecret | None = None
        for candidate in candidates:
            digest = candidate.digest if candidate is not None else _DUMMY_DIGEST
            # No early exit: every candidate is compared whatever the outcome.
            if constant_time_equals(presented, digest) and candidate is not None:
                matched = candidate
        if client is None:
            raise InvalidClientError(reason="unknown_client")
        if matched is None:
            raise InvalidClientError(reason="bad_secret")
        if matched.expires_at is not None and matched.expires_at <= at:
            raise InvalidClientError(reason="secret_expired")
        if client.disabled:
            raise InvalidClientError(reason="client_disabled")
        registered = client.token_endpoint_auth_method
        if registered not in SECRET_METHODS or (method is not None and method != registered):
            raise InvalidClientError(reason="wrong_auth_method")
        return client

    # -- the hot-path cache -------------------------------------------------

    async def _read(self, client_id: str) -> tuple[Client | None, tuple[ClientSecret, ...]]:
        """The client (or None) and its secrets, from the database."""
        client: Client | None
        try:
            client = await self.db.clients.get(client_id)
        except NotFoundError:
            client = None
        # Queried for unknown clients too: the same database work either way.
        return client, await self.db.clients.list_secrets(client_id)

    async def find_active(self, client_id: str) -> Client | None:
        """The enabled client with this id, or ``None`` (unknown or disabled).

        Answers from memory for up to :data:`CACHE_TTL` seconds; mutations
        through any :class:`ClientService` sharing the shared state invalidate it.
        """
        if not _storable_id(client_id):
            return None
        client, _ = await self._records.get(client_id)
        return None if client is None or client.disabled else client

    def invalidate(self, client_id: str | None = None) -> None:
        """Forget the cached record of ``client_id`` (every record when ``None``)."""
        self._records.forget(client_id)

    async def run(self, stop: asyncio.Event, *, backoff: float = 1.0) -> None:
        """Apply invalidations published by other processes until ``stop`` is set.

        When the shared state loses the subscription, the whole cache is dropped
        (messages may have been missed) and the subscription is opened again.
        """
        await self._changes.follow(stop, backoff=backoff)

    # -- internals ----------------------------------------------------------

    @staticmethod
    def _known_form(client_id: str) -> str:
        if not _storable_id(client_id):
            raise NotFoundError(f"client {client_id[:60]!r} does not exist")
        return client_id

    @property
    def _max_ttl(self) -> float:
        return float(self.settings.tokens.max_access_token_ttl)

    async def _add_secret(self, client_id: str, at: datetime) -> str:
        secret = generate_client_secret()
        await self.db.clients.add_secret(
            ClientSecret(
                client_id=client_id,
                digest=sha256_hex(secret.encode()),
                prefix=secret[:SECRET_DISPLAY_PREFIX_LENGTH],
                created_at=at,
            )
        )
        return secret

    async def _invalidate(self, client_id: str) -> None:
        await self._changes.changed(client_id)
