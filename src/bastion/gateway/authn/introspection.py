"""The ``introspection`` authentication method: opaque tokens checked at an RFC 7662 endpoint.

Where a token is read from: ``Authorization: Bearer <token>`` (scheme
case-insensitive), any token that is not a ``bst_`` API key (those belong to
``api_key``). List ``jwt`` before ``introspection`` on a route to verify
JWTs locally and send only the rest to the endpoint.

The token is POSTed to the configured endpoint (RFC 7662 §2.1) with bastion's
client credentials (``client_secret_basic``, RFC 6749 §2.3.1: id and secret
form-encoded, then Basic). The answer is validated (§2.2) before it is
believed: a JSON object; ``active`` exactly ``true``; ``exp``/``nbf`` numbers
that allow now; ``scope``, ``sub``, ``client_id`` strings when present (``sub``
or else ``client_id`` becomes the subject; neither is refused); ``aud``
containing the expected audience when one is configured.

Answers are cached by the SHA-256 digest of the token: active ones until
``min(exp, now + cache_ttl)``, inactive ones for ``negative_cache_ttl`` (so a
client replaying a dead token does not make bastion ask every time). A
revocation at the issuer is therefore seen within ``cache_ttl``.
Every answer stored (or served) from this cache is also handed to ``push``
(the runtime passes :func:`bastion.gateway.native_push.introspected`): the
native data plane serves the same answer, with the same deadline, without
entering Python (``native/src/authn/introspection.rs``). An answer past its
``exp`` but within the leeway is cached nowhere; it is pushed for at most a
second (and never past the leeway), for the native requests that waited for
its lookup.

Failures: an inactive or invalid token is :class:`InvalidBearerTokenError`
(401 ``invalid_token``); an endpoint that is down, slow, or answers anything
but a valid 200 is :class:`IntrospectionUnavailableError` (503) — fail
closed, never "active".
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from bastion.crypto import sha256_hex
from bastion.errors import ServiceUnavailableError
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authn.jwks_cache import client_args, read_bounded
from bastion.gateway.authn.jwt import InvalidBearerTokenError

if TYPE_CHECKING:  # httpx loads only where it is used (tests/features/serve/test_idle_imports.py)
    import httpx


__all__ = ["IntrospectionAuthenticator", "IntrospectionUnavailableError"]

#: Seconds the native cache holds an answer valid within the leeway only: long enough for
#: the requests that waited for its lookup (the native wait is one second), no longer.
_LEEWAY_HOLD = 1.0
#: An introspection response larger than this is not believed (a real one is < 2 KiB).
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TOKEN_BYTES = 8192


class IntrospectionUnavailableError(ServiceUnavailableError):
    """The introspection endpoint could not give a valid answer (503, fail closed)."""

    code = "introspection_unavailable"
    title = "Token introspection unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__("The token cannot be checked right now; try again shortly.")
        self.reason = reason  # for the log and audit, never rendered


class _Entry:
    __slots__ = ("identity", "until")

    def __init__(self, identity: Identity | None, until: float) -> None:
        self.identity = identity
        self.until = until


def _form_encode(value: str) -> str:
    # RFC 6749 §2.3.1: application/x-www-form-urlencoded before Basic.
    return quote(value, safe="").replace("%20", "+")


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class IntrospectionAuthenticator:
    """Authenticates gateway requests by asking an RFC 7662 endpoint (see the module docstring).

    Returns an identity, ``None`` when the request has no (non-API-key) bearer
    token, or raises :class:`InvalidBearerTokenError` (401) /
    :class:`IntrospectionUnavailableError` (503).
    """

    method = "introspection"

    def __init__(
        self,
        endpoint: str,
        *,
        client_id: str,
        client_secret: str,
        cache_ttl: float = 60.0,
        negative_cache_ttl: float = 5.0,
        timeout: float = 3.0,
        audience: str | None = None,
        ca_file: Path | None = None,
        cache_size: int = 10_000,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        push: Callable[[str, Identity | None, float], None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        basic = f"{_form_encode(client_id)}:{_form_encode(client_secret)}"
        self._authorization = "Basic " + base64.b64encode(basic.encode()).decode("ascii")
        self.cache_ttl = cache_ttl
        self.negative_cache_ttl = negative_cache_ttl
        self.audience = audience
        self.cache_size = cache_size
        self.leeway = leeway
        self._clock = clock
        #: Receives (token digest, identity or None for inactive, until) of each cached answer.
        self._push = push
        # httpx (with httpcore, ~10 MiB resident) is imported when introspection is
        # configured, at start-up, not by this module: a node without it never loads it.
        import httpx  # noqa: F401

        self._client_args = client_args(timeout, ca_file, transport)
        self._client: httpx.AsyncClient | None = None
        self._cache: dict[str, _Entry] = {}
        #: Requests made to the endpoint (for tests and metrics).
        self.requests = 0

    async def aclose(self) -> None:
        """Close the connection pool to the endpoint."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def authenticate(self, token: str) -> Identity:
        """The identity of an active ``token``, from the cache or the endpoint.

        Raises :class:`InvalidBearerTokenError` or :class:`IntrospectionUnavailableError`.
        """
        now = self._clock()
        key = sha256_hex(token.encode("ascii"))
        entry = self._cache.get(key)
        if entry is not None:
            if now < entry.until:
                if self._push is not None:
                    # A native miss of an answer held here (the native cache evicted it).
                    self._push(key, entry.identity, entry.until)
                if entry.identity is None:
                    raise InvalidBearerTokenError("inactive")
                return entry.identity
            self._cache.pop(key, None)
        answer = await self._ask(token)
        try:
            identity, exp = self._validate(answer, now)
        except InvalidBearerTokenError:
            self._remember(key, None, now + self.negative_cache_ttl)
            raise
        until = now + self.cache_ttl
        if exp is not None:
            until = min(until, exp)
        if until <= now and self._push is not None:
            # Not to be cached (valid within the leeway only, or `cache_ttl: 0`), but the
            # native requests that waited for this answer (a lookup) judge with it: held
            # natively for at most a second, never past the leeway. A token revoked here
            # or on another node clears the native answers at once (`native_push`).
            hold = now + _LEEWAY_HOLD
            if exp is not None:
                hold = min(hold, exp + self.leeway)
            self._push(key, identity, hold)
        self._remember(key, identity, until)
        return identity

    def _remember(self, key: str, identity: Identity | None, until: float) -> None:
        if self.cache_size == 0 or until <= self._clock():
            return
        cache = self._cache
        while len(cache) >= self.cache_size:
            del cache[next(iter(cache))]
        cache[key] = _Entry(identity, until)
        if self._push is not None:
            self._push(key, identity, until)

    async def _ask(self, token: str) -> dict[str, Any]:
        import httpx

        client = self._client
        if client is None:
            client = self._client = httpx.AsyncClient(**self._client_args)
        self.requests += 1
        try:
            async with client.stream(
                "POST",
                self.endpoint,
                content=f"token={_form_encode(token)}&token_type_hint=access_token",
                headers={
                    "authorization": self._authorization,
                    "content-type": "application/x-www-form-urlencoded",
                    "accept": "application/json",
                },
            ) as response:
                if response.status_code != 200:
                    raise IntrospectionUnavailableError(f"HTTP {response.status_code}")
                body = await read_bounded(response, MAX_RESPONSE_BYTES)
                if body is None:
                    raise IntrospectionUnavailableError("response too large")
        except httpx.HTTPError as exc:
            raise IntrospectionUnavailableError(type(exc).__name__) from None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise IntrospectionUnavailableError("response is not JSON") from None
        if not isinstance(value, dict) or not isinstance(value.get("active"), bool):
            raise IntrospectionUnavailableError("response has no boolean 'active'")
        return value

    def _validate(self, answer: Mapping[str, Any], now: float) -> tuple[Identity, float | None]:
        if answer.get("active") is not True:
            raise InvalidBearerTokenError("inactive")
        exp = _number(answer.get("exp")) if "exp" in answer else None
        if "exp" in answer and exp is None:
            raise InvalidBearerTokenError("invalid_claim")
        if exp is not None and now >= exp + self.leeway:
            raise InvalidBearerTokenError("expired")
        if "nbf" in answer:
            nbf = _number(answer.get("nbf"))
            if nbf is None:
                raise InvalidBearerTokenError("invalid_claim")
            if now + self.leeway < nbf:
                raise InvalidBearerTokenError("not_yet_valid")
        for name in ("scope", "sub", "client_id"):
            if name in answer and not isinstance(answer[name], str):
                raise InvalidBearerTokenError("invalid_claim")
        if self.audience is not None:
            aud = answer.get("aud")
            audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if self.audience not in audiences:
                raise InvalidBearerTokenError("wrong_audience")
        subject = answer.get("sub") or answer.get("client_id")
        if not subject:
            raise InvalidBearerTokenError("missing_claim")
        claims = {k: v for k, v in answer.items() if k != "active"}
        identity = Identity(
            method="introspection",
            subject=subject,
            scopes=frozenset(str(answer.get("scope", "")).split()),
            claims=claims,
        )
        return identity, exp
