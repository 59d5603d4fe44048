"""The key set of a trusted external issuer: fetched over HTTPS, cached, refreshed carefully.

The JWKS (RFC 7517) is fetched with httpx, never on the hot path's common case:
only when nothing is cached yet, when the cached set is older than
``cache_ttl``, or when a token names a ``kid`` the cached set lacks (the IdP
rotated its keys). The ``jwks_uri`` is the configured one, or discovered once
from the issuer's metadata: OpenID Connect Discovery
(``/.well-known/openid-configuration``) first, then RFC 8414
(``/.well-known/oauth-authorization-server``); the metadata's ``issuer`` must
equal the configured issuer exactly (RFC 8414 §3.3).

Two rules keep an attacker from turning bastion into a JWKS flood: fetches
are single-flight (one in progress at a time; concurrent callers wait for
it), and a fetch *attempt* — successful or not — happens at most once per
``min_refresh_interval``. A token with a random ``kid`` therefore costs at most
one fetch per interval, however many arrive. When the IdP is down the old
set keeps serving (a stale set beats refusing every token); only when there
has never been a set does :class:`JwksUnavailableError` (503) answer.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from bastion.crypto import InvalidKeyError, PublicKeySet
from bastion.errors import ServiceUnavailableError

if TYPE_CHECKING:  # httpx loads only where it is used (tests/features/serve/test_idle_imports.py)
    import httpx

__all__ = ["JwksCache", "JwksUnavailableError"]

log = logging.getLogger("bastion.gateway.jwks")

#: A JWKS or metadata document larger than this is refused (a real one is a few KiB).
MAX_DOCUMENT_BYTES = 256 * 1024

_DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class JwksUnavailableError(ServiceUnavailableError):
    """No key set of a trusted issuer could be fetched yet (503, fail closed)."""

    code = "issuer_unavailable"
    title = "Token issuer unavailable"

    def __init__(self) -> None:
        super().__init__("The keys of the token's issuer cannot be fetched right now.")


class _FetchError(Exception):
    """One fetch failed; the message is for the log (never shown to clients)."""


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """httpx ``verify``: the system trust store, or only ``ca_file`` when given."""
    if ca_file is None:
        return True
    return ssl.create_default_context(cafile=str(ca_file))


def client_args(
    timeout: float, ca_file: Path | None, transport: httpx.AsyncBaseTransport | None
) -> dict[str, Any]:
    """The ``httpx.AsyncClient`` arguments of a fetch from an identity provider.

    Redirects are never followed: a provider's endpoint is configured exactly, and a
    redirect could carry the client's credentials or the fetch to another host.
    """
    return {
        "timeout": timeout,
        "verify": tls_verify(ca_file),
        "follow_redirects": False,
        "transport": transport,
    }


class JwksCache:
    """The current :class:`PublicKeySet` of one issuer (see the module docstring).

    ``algorithms`` restricts which keys of the set are usable (keys for other
    algorithms are skipped, never trusted). ``clock`` is monotonic seconds;
    ``transport`` lets tests plug in an httpx transport. ``on_keys`` is called
    with the issuer, the key set and ``cache_ttl`` after every successful fetch
    (the runtime pushes them into the native core: ``native_push.issuer_keys``).
    """

    def __init__(
        self,
        issuer: str,
        *,
        jwks_uri: str | None = None,
        algorithms: Collection[str] = ("RS256", "ES256"),
        cache_ttl: float = 600.0,
        min_refresh_interval: float = 30.0,
        timeout: float = 5.0,
        ca_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
        on_keys: Callable[[str, PublicKeySet, float], None] | None = None,
    ) -> None:
        self.issuer = issuer
        self.jwks_uri = jwks_uri
        self.algorithms = tuple(algorithms)
        self.cache_ttl = cache_ttl
        self.min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._on_keys = on_keys
        # httpx (with httpcore, ~10 MiB resident) is imported by the first trusted issuer,
        # at start-up, not by this module: a node that trusts none never loads it.
        import httpx  # noqa: F401

        self._client_args = client_args(timeout, ca_file, transport)
        self._keys: PublicKeySet | None = None
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()
        #: Number of fetch attempts made (for tests and metrics).
        self.fetches = 0

    def current(self) -> PublicKeySet:
        """The cached key set (empty before the first successful fetch)."""
        return self._keys if self._keys is not None else PublicKeySet()

    async def get(self) -> PublicKeySet:
        """The key set, fetched first when missing or older than ``cache_ttl``.

        Raises :class:`JwksUnavailableError` when there is no set and none can be fetched.
        """
        keys = self._keys
        if keys is not None and self._clock() - self._fetched_at < self.cache_ttl:
            return keys
        return await self._refresh()

    async def refresh_for_kid(self, kid: str) -> PublicKeySet:
        """The key set after a refetch if ``kid`` is unknown and the interval allows one.

        Raises :class:`JwksUnavailableError` when there is no set and none can be fetched.
        """
        keys = await self.get()
        if kid in keys:
            return keys
        return await self._refresh()

    def native_state(self) -> tuple[PublicKeySet | None, float, float]:
        """What the native core needs to verify as this cache would: the set (None
        before the first successful fetch), the seconds it stays fresh, and the
        seconds before another fetch may be tried (0: one may be tried now)."""
        now = self._clock()
        fresh = self.cache_ttl - (now - self._fetched_at) if self._keys is not None else 0.0
        last = self._last_attempt
        retry = 0.0 if last is None else self.min_refresh_interval - (now - last)
        return self._keys, max(fresh, 0.0), max(retry, 0.0)

    def _may_fetch(self) -> bool:
        last = self._last_attempt
        return last is None or self._clock() - last >= self.min_refresh_interval

    async def _refresh(self) -> PublicKeySet:
        if not self._may_fetch():
            return self._available()
        attempt_before = self._last_attempt
        async with self._lock:
            # Someone else fetched while we waited: use their result (single flight).
            if self._last_attempt != attempt_before or not self._may_fetch():
                return self._available()
            self._last_attempt = self._clock()
            self.fetches += 1
            try:
                keys = await self._fetch()
            except _FetchError as exc:
                log.warning("JWKS of %s not refreshed: %s", self.issuer, exc)
                return self._available()
            self._keys = keys
            self._fetched_at = self._clock()
            if self._on_keys is not None:
                self._on_keys(self.issuer, keys, self.cache_ttl)
            return keys

    def _available(self) -> PublicKeySet:
        if self._keys is None:
            raise JwksUnavailableError
        return self._keys

    async def _fetch(self) -> PublicKeySet:
        import httpx

        async with httpx.AsyncClient(**self._client_args) as client:
            if self.jwks_uri is None:
                self.jwks_uri = await self._discover(client)
            document = await _get_json(client, self.jwks_uri)
        try:
            return PublicKeySet.from_jwks(document, allowed_algs=self.algorithms)
        except InvalidKeyError as exc:
            raise _FetchError(f"{self.jwks_uri}: {exc.detail}") from None

    async def _discover(self, client: httpx.AsyncClient) -> str:
        problems: list[str] = []
        for path in _DISCOVERY_PATHS:
            url = self.issuer + path
            try:
                metadata = await _get_json(client, url)
            except _FetchError as exc:
                problems.append(str(exc))
                continue
            if metadata.get("issuer") != self.issuer:
                problems.append(f"{url}: its issuer is not {self.issuer}")
                continue
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                problems.append(f"{url}: no usable jwks_uri")
                continue
            return jwks_uri
        raise _FetchError("; ".join(problems))


async def read_bounded(response: httpx.Response, limit: int) -> bytes | None:
    """The body of ``response``, or None as soon as it grows past ``limit`` bytes.

    Read chunk by chunk so that a hostile or broken provider cannot make the
    process buffer an unbounded answer.
    """
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    import httpx

    try:
        async with client.stream("GET", url, headers={"accept": "application/json"}) as response:
            if response.status_code != 200:
                raise _FetchError(f"{url}: HTTP {response.status_code}")
            body = await read_bounded(response, MAX_DOCUMENT_BYTES)
            if body is None:
                raise _FetchError(f"{url}: document larger than {MAX_DOCUMENT_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise _FetchError(f"{url}: {type(exc).__name__}") from None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _FetchError(f"{url}: not JSON") from None
    if not isinstance(value, dict):
        raise _FetchError(f"{url}: not a JSON object")
    return value
