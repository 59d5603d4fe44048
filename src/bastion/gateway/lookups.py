"""The control plane's answers to the native data plane's cache misses.

A request whose credential the native caches do not hold — a new API key, a
client certificate seen for the first time, an opaque token with no cached
introspection answer — no longer goes to the Python pipeline: the native core
asks for the *record* only (``native/src/lookup.rs``), through the hook
:meth:`NativeLookups.install` registers (``_native.lookup_hook_set``), and
then finishes the request itself. Concurrent misses of one credential make one
lookup.

The hook is called on the native core's lookup thread with ``(kind, value,
ticket)`` and only schedules the lookup on this process's event loop. The
lookup reuses Python's own code and pushes what it found through
:mod:`bastion.gateway.native_push` (which wakes the waiting requests):

- ``api_key`` (the presented key): :meth:`ApiKeyService.look_up` — a record,
  or a refusal for a malformed / unknown key;
- ``cert`` (the verified leaf's DER): :meth:`MtlsAuthenticator.identify` — the
  identity, or ``refused`` for a certificate it cannot read;
- ``introspection`` (the token): :meth:`IntrospectionAuthenticator.authenticate`
  — an active or inactive answer, cached and pushed as the pipeline would;
- ``jwks`` (``"{issuer}\n{kid}"``, or the issuer alone for a token without a
  string ``kid``): what :meth:`TrustedIssuer.verify` does before it verifies —
  ``JwksCache.refresh_for_kid`` / ``get``, refetching under the cache's own
  single flight and ``min_refresh_interval`` — then
  :func:`~bastion.gateway.native_push.issuer_state` pushes the set it holds and
  how long it will not fetch again (the native core then judges the token:
  admitted, or ``401 invalid_token`` for a ``kid`` still unknown); no set ever
  fetched is its ``503 issuer_unavailable``;
- ``client`` (an OAuth client id, of one of bastion's own tokens the native core
  verified): :meth:`JwtAuthenticator.look_up_client` — the verifier's
  ``client_is_active`` read, pushed as active or inactive (the native core then
  admits the token, or refuses it ``401 invalid_token`` as the verifier's
  ``client_disabled``), dropped on every node by the client's next change;
- ``signing_key`` (a ``kid`` of one of bastion's own tokens the pushed keys lack):
  :func:`~bastion.gateway.native_push.signing_key` pushes bastion's keys when they
  hold it (a key made or activated since the last push); else ``refused``, the
  native ``401 invalid_token`` (Python's ``unknown_kid``);
- ``session`` (the hex SHA-256 of a browser session's id, never the id):
  :meth:`SessionManager.resolve_digest` — the live session, pushed with its user
  (:func:`~bastion.gateway.native_push.session_found`), or ``refused`` with the
  refusal cached natively for a few seconds (an unknown, ended or timed-out one;
  :func:`~bastion.gateway.native_push.session_refused`);
- ``exchanged`` (``"{audience}\n{token}"``, a token exchanged from an API key):
  :meth:`JwtAuthenticator.authenticate` for the route's audience — accepted, it
  is pushed as the key's (:func:`~bastion.gateway.native_push.token_exchanged`);
  refused, the native ``401 invalid_token``.

Then it answers the ticket: ``found()``, ``refused()``, or, when the store or
the endpoint failed (a ``ServiceUnavailableError``), ``unavailable(code, title,
detail)``: the requests waiting for that lookup get Python's 503, and nothing
of it is cached. Anything else (a bug, a failure the native core does not
render) leaves the ticket unanswered: the lookup is lost, and the waiting
requests get the kind's ``503`` from the native core (``lookup::lost``).

Every lookup is answered within its bound: a store read (``api_key``, ``cert``,
``client``, ``exchanged``, ``signing_key``) within :data:`STORE_LIMIT`, a call to an
endpoint (``jwks``, ``introspection``) within its own configured ``timeout`` and
never after :data:`ENDPOINT_LIMIT`; past it, ``lost()``: the kind's 503, which the
native core renders (``lookup::lost``, the one home of those answers) and counts
``unavailable``. The native core waits for the answer
however long that takes (``LOOKUP_WAIT``, 65 s, is only a backstop for an event loop
that stopped): a lookup slower than a second on a loaded machine is served, not
refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bastion import _native
from bastion.apikeys.errors import InvalidApiKeyError
from bastion.errors import ServiceUnavailableError
from bastion.gateway import native_push
from bastion.gateway.authn.introspection import IntrospectionAuthenticator
from bastion.gateway.authn.jwt import InvalidBearerTokenError, JwtAuthenticator
from bastion.gateway.authn.mtls import MtlsAuthenticator

__all__ = ["KeyLookup", "NativeLookups"]

log = logging.getLogger(__name__)

#: The lookups whose hook is installed (one per process: the native core's).
_installed: list[NativeLookups] = []

#: Longest a store read of a lookup may take before its requests get a 503.
STORE_LIMIT = 10.0
#: Longest an endpoint's lookup may take (its configured ``timeout`` answers first;
#: a key set's refresh may ask discovery, then the keys). Below the native backstop.
ENDPOINT_LIMIT = 60.0

#: A browser session's id digest (lower-case hex SHA-256), the ``session`` lookup's value.
_DIGEST = re.compile(r"[0-9a-f]{64}")

#: The lookups that call an endpoint (bounded by ``ENDPOINT_LIMIT``); the others read a store.
_ENDPOINT_KINDS = frozenset({"introspection", "jwks"})


class KeyLookup(Protocol):
    """What a lookup needs of :class:`~bastion.apikeys.ApiKeyService`."""

    async def look_up(self, key: str) -> Any: ...


class SessionLookup(Protocol):
    """What a lookup needs of :class:`~bastion.interaction.SessionManager`."""

    @property
    def idle_timeout(self) -> float: ...

    async def resolve_digest(self, id_digest: str) -> Any: ...


class _NoSessionError(Exception):
    """No live session has the digest looked up (answered ``refused``)."""


class NativeLookups:
    """Answers the native core's lookups on the running event loop (see the module docstring).

    ``authenticators`` returns the gateway's current ``mtls`` / ``introspection``
    authenticators (by method name).
    """

    def __init__(
        self,
        api_keys: KeyLookup,
        authenticators: Callable[[], Mapping[str, Any]],
        sessions: SessionLookup | None = None,
    ) -> None:
        self._api_keys = api_keys
        self._sessions = sessions
        self._authenticators = authenticators
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        """Register the hook; lookups run on the event loop running this call."""
        self._loop = asyncio.get_running_loop()
        _native.lookup_hook_set(self._hook)
        _installed[:] = [self]

    def uninstall(self) -> None:
        """Remove the hook (if it is still this one's): the native core defers its misses again."""
        self._loop = None
        if _installed and _installed[0] is self:
            _installed.clear()
            _native.lookup_hook_set(None)

    def _hook(self, kind: str, value: str | bytes, ticket: Any) -> None:
        # On the native lookup thread: only hand the lookup to the loop.
        loop = self._loop
        if loop is None:
            return  # the ticket is dropped: a lost lookup
        try:
            loop.call_soon_threadsafe(self._start, kind, value, ticket)
        except RuntimeError:  # the loop is closed: lost
            return

    def _start(self, kind: str, value: str | bytes, ticket: Any) -> None:
        task = asyncio.ensure_future(self.look_up(kind, value, ticket))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def look_up(self, kind: str, value: str | bytes, ticket: Any) -> None:
        """Look ``value`` up, push what was found, answer ``ticket``."""
        limit = ENDPOINT_LIMIT if kind in _ENDPOINT_KINDS else STORE_LIMIT
        try:
            async with asyncio.timeout(limit):
                await self._find(kind, value)
        except TimeoutError:
            log.warning("native %s lookup took over %.0f s: answered 503", kind, limit)
            ticket.lost()  # the kind's 503: the native core renders it (lookup::lost)
        except (InvalidApiKeyError, InvalidBearerTokenError, _NoSessionError):
            ticket.refused()
        except ServiceUnavailableError as exc:
            try:
                ticket.unavailable(exc.code, exc.title, exc.detail)
            except ValueError:
                log.warning("native %s lookup failed (%s): answered 503 natively", kind, exc.code)
        except Exception:
            log.exception("native %s lookup failed: answered 503 natively", kind)
        else:
            ticket.found()

    async def _find(self, kind: str, value: str | bytes) -> None:
        if kind == "api_key" and isinstance(value, str):
            await self._api_keys.look_up(value)
            return
        if kind == "cert" and isinstance(value, bytes):
            mtls = self._authenticators().get("mtls")
            if isinstance(mtls, MtlsAuthenticator):
                mtls.identify(value)
                return
        if kind == "jwks" and isinstance(value, str):
            jwt = self._authenticators().get("jwt")
            issuer, newline, kid = value.partition("\n")
            trusted = jwt.trusted_issuers.get(issuer) if isinstance(jwt, JwtAuthenticator) else None
            if trusted is not None:
                try:
                    # What TrustedIssuer.verify does before it verifies (rate-limited).
                    if newline:
                        await trusted.jwks.refresh_for_kid(kid)
                    else:
                        await trusted.jwks.get()
                finally:
                    native_push.issuer_state(trusted.jwks)
                return
        if kind == "client" and isinstance(value, str):
            jwt = self._authenticators().get("jwt")
            if isinstance(jwt, JwtAuthenticator):
                if not await jwt.look_up_client(value):
                    raise InvalidBearerTokenError("client_disabled")
                return
        if kind == "exchanged" and isinstance(value, str):
            jwt = self._authenticators().get("jwt")
            audience, _, token = value.partition("\n")
            if isinstance(jwt, JwtAuthenticator) and token:
                # Judged as the key it was exchanged from (pushed when accepted).
                await jwt.authenticate(token, audience=audience or None)
                return
        if kind == "signing_key" and isinstance(value, str):
            if not native_push.signing_key(value):
                raise InvalidBearerTokenError("unknown_kid")
            return
        if kind == "session" and isinstance(value, str) and self._sessions is not None:
            if not _DIGEST.fullmatch(value):
                raise _NoSessionError
            active = await self._sessions.resolve_digest(value)
            if active is None:
                native_push.session_refused(value)
                raise _NoSessionError
            native_push.session_found(value, active, self._sessions.idle_timeout)
            return
        if kind == "introspection" and isinstance(value, str):
            introspection = self._authenticators().get("introspection")
            if isinstance(introspection, IntrospectionAuthenticator):
                await introspection.authenticate(value)
                return
        raise LookupError(f"no {kind} lookup here")
