"""OAuth 2.0 client registry: create, change, rotate secrets, authenticate (RFC 6749 §2).

:class:`ClientService` is what the CLI, the admin API and the token endpoint
use. It validates client metadata (:class:`ClientSpec`), generates client ids
and secrets, keeps secrets only as SHA-256 digests and authenticates presented
secrets in constant time.

Client secrets look like ``bcs_`` + 43 base64url characters (256 random bits);
they are returned once, by :meth:`ClientService.create` and
:meth:`ClientService.rotate_secret`, and stored as their SHA-256 hex digest
plus an 8-character display prefix. A rotation keeps the previous secrets
working for a grace period (``tokens.client_secret_grace`` by default).

:meth:`ClientService.find_active` serves the hot path from an in-memory cache
(a few seconds) that every mutation invalidates — in this process at once, in
the others through the shared-state channel ``"clients"``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import string
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, get_args
from urllib.parse import urlsplit

import orjson

from bastion.crypto import constant_time_equals, sha256_hex
from bastion.crypto.keys import InvalidKeyError, PublicKeySet
from bastion.errors import BastionError
from bastion.protocol.rfc6749.errors import InvalidClientError
from bastion.protocol.rfc6749.scope import is_scope_token
from bastion.storage import Client, ClientSecret, Database, NotFoundError, Page, feed
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.models import ClientType, utcnow
from bastion.storage.shared import SharedState
from bastion.storage.shared.invalidation import follow_invalidations

__all__ = [
    "AUTH_METHODS",
    "AVAILABLE_GRANT_TYPES",
    "CLIENTS_CHANNEL",
    "CLIENT_SECRET_PREFIX",
    "GRANT_TYPES",
    "UNAVAILABLE_GRANT_TYPES",
    "ClientService",
    "ClientSpec",
    "ClientSpecError",
    "generate_client_id",
    "generate_client_secret",
]

log = logging.getLogger("bastion.oauth.clients")

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]

#: Token endpoint authentication methods a client may register (RFC 7591 §2).
AUTH_METHODS: Final[tuple[str, ...]] = get_args(AuthMethod)
#: The methods that present a client secret.
SECRET_METHODS: Final = frozenset({"client_secret_basic", "client_secret_post"})

#: Grant types a client may be allowed; implicit and password are never offered
#: (RFC 9700 §2.1.2, §2.4).
GRANT_TYPES: Final[tuple[str, ...]] = (
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
)

#: Grant types a client could name but this version cannot serve yet, and why. A client
#: allowed only these would be refused at the token endpoint forever, so creating one
#: (or adding one of them to a client) is refused with this reason instead.
UNAVAILABLE_GRANT_TYPES: Final[Mapping[str, str]] = {
    "authorization_code": "the login and consent flow it needs is not built yet",
    "refresh_token": "refresh tokens are issued only by the authorization_code grant, "
    "which is not built yet",
}
#: The grant types a client can be allowed today.
AVAILABLE_GRANT_TYPES: Final[tuple[str, ...]] = tuple(
    grant for grant in GRANT_TYPES if grant not in UNAVAILABLE_GRANT_TYPES
)

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

_MAX_NAME = 255
_MAX_ITEMS = 100
_MAX_SCOPE_TOKEN = 256
_MAX_URI = 2048
_MAX_METADATA_BYTES = 16 * 1024
_MAX_METADATA_DEPTH = 16
_MIN_TTL = 30
#: The largest integer every JSON consumer reads exactly (IEEE 754 double).
_MAX_JSON_INT = 2**53

_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_UPDATABLE: Final = frozenset(
    {
        "name",
        "token_endpoint_auth_method",
        "grant_types",
        "scopes",
        "audiences",
        "access_token_ttl",
        "redirect_uris",
        "jwks",
        "metadata",
    }
)


class ClientSpecError(BastionError):
    """Client metadata is invalid; ``field`` names the member, the detail says the fix."""

    code = "invalid_client_metadata"
    status = 400
    title = "Invalid client metadata"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)
        self.field = field


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """What a new client should be; ``None`` members take the defaults of its type.

    Defaults: confidential clients authenticate with ``client_secret_basic`` and
    may use ``client_credentials``; public clients authenticate with ``none`` and
    may use ``authorization_code`` and ``refresh_token``.
    """

    name: str
    client_type: ClientType = "confidential"
    token_endpoint_auth_method: str | None = None
    grant_types: Sequence[str] | None = None
    scopes: Sequence[str] = ()
    audiences: Sequence[str] = ()
    access_token_ttl: int | None = None
    redirect_uris: Sequence[str] = ()
    jwks: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def generate_client_id() -> str:
    """A new random client id: 22 base62 characters (not sequential, not guessable)."""
    return "".join(secrets.choice(_CLIENT_ID_ALPHABET) for _ in range(_CLIENT_ID_LENGTH))


def generate_client_secret() -> str:
    """A new client secret: ``bcs_`` + 43 base64url characters (256 bits from the OS CSPRNG)."""
    return CLIENT_SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


# ---------------------------------------------------------------------------
# validation


def _no_controls(value: str) -> bool:
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _storable_id(client_id: object) -> bool:
    """Whether ``client_id`` can name a stored client at all.

    Ids arrive from requests (HTTP Basic, form fields); a NUL or a lone surrogate
    would make the database driver fail instead of simply finding nothing.
    """
    if not isinstance(client_id, str) or not 0 < len(client_id) <= _MAX_NAME:
        return False
    if not _no_controls(client_id):
        return False
    try:
        client_id.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ClientSpecError("name", "give the client a non-empty name")
    name = name.strip()
    if len(name) > _MAX_NAME or not _no_controls(name):
        raise ClientSpecError(
            "name", f"use at most {_MAX_NAME} characters and no control characters"
        )
    return name


def _string_list(field_name: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ClientSpecError(field_name, "must be a list of strings")
    items = list(values)
    if len(items) > _MAX_ITEMS:
        raise ClientSpecError(field_name, f"at most {_MAX_ITEMS} entries are allowed")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ClientSpecError(field_name, "must be a list of strings")
        if item not in out:
            out.append(item)
    return tuple(out)


def _check_scopes(values: object) -> tuple[str, ...]:
    scopes = _string_list("scopes", values)
    for scope in scopes:
        if len(scope) > _MAX_SCOPE_TOKEN or not is_scope_token(scope):
            raise ClientSpecError(
                "scopes",
                f"{scope[:60]!r} is not a scope token (RFC 6749 §3.3: printable ASCII "
                f"without spaces, '\"' or '\\\\', at most {_MAX_SCOPE_TOKEN} characters)",
            )
    return scopes


def _absolute_uri(field_name: str, uri: str) -> tuple[str, str, str]:
    """Split ``uri``; raise ClientSpecError unless it is an absolute URI without a fragment."""
    if len(uri) > _MAX_URI or not _no_controls(uri) or " " in uri:
        raise ClientSpecError(
            field_name,
            f"{uri[:60]!r} must be a URI of at most {_MAX_URI} characters without spaces",
        )
    scheme, _, rest = uri.partition(":")
    if not _URI_SCHEME.fullmatch(scheme) or not rest:
        raise ClientSpecError(
            field_name, f"{uri[:60]!r} is not an absolute URI (e.g. https://api.example.com)"
        )
    if "#" in uri:
        raise ClientSpecError(field_name, f"{uri[:60]!r} must not contain a fragment ('#...')")
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        _ = parts.port
    except ValueError:
        raise ClientSpecError(field_name, f"{uri[:60]!r} is not a valid URI") from None
    if rest.startswith("//") and not host:
        raise ClientSpecError(field_name, f"{uri[:60]!r} has no host")
    return scheme.lower(), host.lower(), rest


def _check_audiences(values: object) -> tuple[str, ...]:
    audiences = _string_list("audiences", values)
    for audience in audiences:
        _absolute_uri("audiences", audience)
    return audiences


def _check_redirect_uris(values: object) -> tuple[str, ...]:
    uris = _string_list("redirect_uris", values)
    for uri in uris:
        scheme, host, _ = _absolute_uri("redirect_uris", uri)
        if scheme == "https" and host:
            continue
        if scheme == "http" and host in _LOOPBACK_HOSTS:
            continue  # RFC 8252 §7.3: native apps on a loopback port
        raise ClientSpecError(
            "redirect_uris",
            f"{uri[:60]!r} must use https (http only for a loopback host: "
            "127.0.0.1, [::1], localhost)",
        )
    return uris


def _check_metadata_value(value: object, depth: int) -> None:
    if depth > _MAX_METADATA_DEPTH:
        raise ClientSpecError("metadata", f"nest at most {_MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ClientSpecError("metadata", "object keys must be strings")
            _check_metadata_value(key, depth + 1)
            _check_metadata_value(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_metadata_value(item, depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            raise ClientSpecError("metadata", "strings must not contain NUL characters")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if abs(value) > _MAX_JSON_INT:
            raise ClientSpecError("metadata", f"integers must lie within ±2^53, not {value}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ClientSpecError("metadata", "numbers must be finite")
    else:
        raise ClientSpecError("metadata", f"a {type(value).__name__} is not a JSON value")


def _check_metadata(value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ClientSpecError("metadata", "must be a JSON object")
    metadata = dict(value)
    _check_metadata_value(metadata, 0)
    if len(orjson.dumps(metadata)) > _MAX_METADATA_BYTES:
        raise ClientSpecError("metadata", f"must serialise to at most {_MAX_METADATA_BYTES} bytes")
    return metadata


def _check_jwks(jwks: object) -> dict[str, Any] | None:
    if jwks is None:
        return None
    if not isinstance(jwks, Mapping):
        raise ClientSpecError("jwks", 'must be a JWK Set: {"keys": [...]}')
    try:
        key_set = PublicKeySet.from_jwks(jwks)
    except InvalidKeyError as error:
        raise ClientSpecError("jwks", error.detail) from None
    if not len(key_set):
        raise ClientSpecError("jwks", "holds no key: register at least one public key")
    # Store the document as given (validated): clients may rely on members we ignore.
    return _check_metadata_jwks(dict(jwks))


def _check_metadata_jwks(jwks: dict[str, Any]) -> dict[str, Any]:
    try:
        _check_metadata_value(jwks, 0)
    except ClientSpecError as error:
        raise ClientSpecError("jwks", error.detail.split(": ", 1)[-1]) from None
    if len(orjson.dumps(jwks)) > 4 * _MAX_METADATA_BYTES:
        raise ClientSpecError("jwks", "the JWK Set is too large")
    return jwks


def _check_ttl(ttl: object, maximum: float) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise ClientSpecError("access_token_ttl", "must be a whole number of seconds")
    if not _MIN_TTL <= ttl <= maximum:
        raise ClientSpecError(
            "access_token_ttl",
            f"{ttl} s is outside {_MIN_TTL}..{maximum:g} s "
            "(the maximum is tokens.max_access_token_ttl)",
        )
    return ttl


def _validated(
    values: Mapping[str, Any], max_ttl: float, held: Collection[str] = ()
) -> dict[str, Any]:
    """Check a complete set of client members; return them normalised.

    ``held`` are the grant types the client already has: one of them that this
    version cannot serve (:data:`UNAVAILABLE_GRANT_TYPES`) is kept, never added.

    Raises:
        ClientSpecError: a member is invalid or the members contradict each other.
    """
    client_type = values["client_type"]
    if client_type not in get_args(ClientType):
        raise ClientSpecError("client_type", "must be 'confidential' or 'public'")
    method = values["token_endpoint_auth_method"]
    if method not in AUTH_METHODS:
        raise ClientSpecError(
            "token_endpoint_auth_method", f"must be one of {', '.join(AUTH_METHODS)}"
        )
    if client_type == "public" and method != "none":
        raise ClientSpecError(
            "token_endpoint_auth_method",
            "a public client cannot keep a credential: use 'none' (or make it confidential)",
        )
    if client_type == "confidential" and method == "none":
        raise ClientSpecError(
            "token_endpoint_auth_method",
            "a confidential client must authenticate: use client_secret_basic, "
            "client_secret_post or private_key_jwt (or make it public)",
        )
    grant_types = _string_list("grant_types", values["grant_types"])
    available = ", ".join(AVAILABLE_GRANT_TYPES)
    if not grant_types:
        raise ClientSpecError("grant_types", f"allow at least one of {available}")
    for grant in grant_types:
        if grant not in GRANT_TYPES:
            raise ClientSpecError(
                "grant_types", f"{grant[:60]!r} is not supported; use one of {available}"
            )
        if grant in UNAVAILABLE_GRANT_TYPES and grant not in held:
            raise ClientSpecError(
                "grant_types",
                f"{grant} is not available in this version ({UNAVAILABLE_GRANT_TYPES[grant]}); "
                f"use one of {available}",
            )
    if client_type == "public" and "client_credentials" in grant_types:
        raise ClientSpecError(
            "grant_types",
            "a public client cannot use client_credentials (it has no credential): "
            "make the client confidential",
        )
    redirect_uris = _check_redirect_uris(values["redirect_uris"])
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientSpecError(
            "redirect_uris", "the authorization_code grant needs at least one redirect URI"
        )
    jwks = _check_jwks(values["jwks"])
    if method == "private_key_jwt" and jwks is None:
        raise ClientSpecError(
            "jwks", "private_key_jwt needs the client's public keys: register a JWK Set"
        )
    return {
        "name": _check_name(values["name"]),
        "client_type": client_type,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "scopes": _check_scopes(values["scopes"]),
        "audiences": _check_audiences(values["audiences"]),
        "access_token_ttl": _check_ttl(values["access_token_ttl"], max_ttl),
        "redirect_uris": redirect_uris,
        "jwks": jwks,
        "metadata": _check_metadata(values["metadata"]),
    }


def _spec_values(spec: ClientSpec) -> dict[str, Any]:
    public = spec.client_type == "public"
    method = spec.token_endpoint_auth_method
    if method is None:
        method = "none" if public else "client_secret_basic"
    grant_types = spec.grant_types
    if grant_types is None:
        grant_types = ("authorization_code", "refresh_token") if public else ("client_credentials",)
    return {
        "name": spec.name,
        "client_type": spec.client_type,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "scopes": spec.scopes,
        "audiences": spec.audiences,
        "access_token_ttl": spec.access_token_ttl,
        "redirect_uris": spec.redirect_uris,
        "jwks": spec.jwks,
        "metadata": spec.metadata,
    }


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
        self._cache: dict[str, tuple[float, Client | None]] = {}
        # client_id -> (expiry, client or None, its secrets): what authenticate_secret
        # needs, so a token request costs no database round trip (DESIGN: hot paths
        # read memory). Same TTL and invalidation as ``_cache``.
        self._credentials: dict[str, tuple[float, Client | None, tuple[ClientSecret, ...]]] = {}

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
        values = _validated(_spec_values(spec), self._max_ttl)
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
        access_token_ttl, redirect_uris, jwks, metadata. The client type cannot
        change (create a new client instead); disable/enable have their own methods.
        Switching to a secret method from another one leaves the client without a
        secret until :meth:`rotate_secret` issues one.

        Raises:
            NotFoundError: no such client.
            ClientSpecError: an unknown member, or the result is invalid.
        """
        unknown = sorted(set(changes) - _UPDATABLE)
        if unknown:
            hint = (
                "create a new client instead"
                if "client_type" in unknown
                else f"updatable: {', '.join(sorted(_UPDATABLE))}"
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
        }
        merged.update(changes)
        values = _validated(merged, self._max_ttl, held=current.grant_types)
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
        if isinstance(grace, bool) or not isinstance(grace, int | float):
            raise ClientSpecError("grace", "must be a number of seconds")
        if not math.isfinite(grace) or grace < 0 or grace > 10 * 365 * 86400:
            raise ClientSpecError("grace", "must be between 0 and 10 years, in seconds")
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
            client, stored = await self._credentials_of(client_id)
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

    async def _credentials_of(
        self, client_id: str
    ) -> tuple[Client | None, tuple[ClientSecret, ...]]:
        """The client (or None) and its secrets, from memory for up to :data:`CACHE_TTL`."""
        now = time.monotonic()
        hit = self._credentials.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        client: Client | None
        try:
            client = await self.db.clients.get(client_id)
        except NotFoundError:
            client = None
        # Queried for unknown clients too: the same database work either way.
        stored = await self.db.clients.list_secrets(client_id)
        if len(self._credentials) >= _CACHE_MAX_ENTRIES:
            # Random unknown ids must not grow memory without bound.
            self._credentials.clear()
        self._credentials[client_id] = (now + CACHE_TTL, client, stored)
        return client, stored

    async def find_active(self, client_id: str) -> Client | None:
        """The enabled client with this id, or ``None`` (unknown or disabled).

        Answers from memory for up to :data:`CACHE_TTL` seconds; mutations
        through any :class:`ClientService` sharing the shared state invalidate it.
        """
        if not _storable_id(client_id):
            return None
        now = time.monotonic()
        hit = self._cache.get(client_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            client: Client | None = await self.db.clients.get(client_id)
        except NotFoundError:
            client = None
        if client is not None and client.disabled:
            client = None
        if len(self._cache) >= _CACHE_MAX_ENTRIES:
            # Random unknown ids must not grow memory without bound.
            self._cache.clear()
        self._cache[client_id] = (now + CACHE_TTL, client)
        return client

    def invalidate(self, client_id: str | None = None) -> None:
        """Forget the cached record of ``client_id`` (every record when ``None``)."""
        if client_id is None:
            self._cache.clear()
            self._credentials.clear()
        else:
            self._cache.pop(client_id, None)
            self._credentials.pop(client_id, None)

    async def run(self, stop: asyncio.Event, *, backoff: float = 1.0) -> None:
        """Apply invalidations published by other processes until ``stop`` is set.

        When the shared state loses the subscription, the whole cache is dropped
        (messages may have been missed) and the subscription is opened again.
        """
        await follow_invalidations(
            self.shared, CLIENTS_CHANNEL, self.invalidate, stop, backoff=backoff
        )

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
        self.invalidate(client_id)
        try:
            await self.shared.publish(CLIENTS_CHANNEL, client_id.encode())
        except SharedStateUnavailableError as error:
            # The change is stored; other nodes' caches catch up within CACHE_TTL.
            log.warning("could not publish invalidation of client %s: %s", client_id, error)
