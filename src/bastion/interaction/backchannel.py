"""Back-channel logout: telling the clients a browser session signed into that it ended.

OpenID Connect Back-Channel Logout 1.0 (the token's rules:
:mod:`bastion.protocol.oidc.backchannel`).

- **Who**: every client that obtained an authorization code during the session
  (``session_clients``, written when the code is issued) and registered a
  ``backchannel_logout_uri``.
- **When**: whenever the session ends, for any reason — logout, RP-initiated logout,
  sign-out from the account page, timeouts, a new login in the same browser, the user
  disabled, deleted or given a new password. :class:`~bastion.interaction.sessions.SessionManager`
  calls :meth:`BackchannelLogout.session_ended` with each session *it* ended; ending a
  session is one conditional UPDATE, so of several nodes (or requests) ending the same
  session exactly one gets it back — that node, and only it, delivers: no duplicates.
- **How**: off the request path (a task per ended session), a ``POST`` of
  ``logout_token=<JWT>`` (``application/x-www-form-urlencoded``), the token signed as the
  client's ID tokens are (:class:`~bastion.oauth.authorization_codes.IdTokenSigner`, header
  ``typ: logout+jwt``); a bounded timeout (5 s), redirects never followed, up to 3
  attempts with exponential backoff (0.5 s, 1 s) on a 5xx, 408, 429 or a connection
  failure; any other answer but 200/204 is final. Each outcome is a ``logout.backchannel``
  audit event (``success`` or ``failure`` with the reason) naming the client.
- **Refused URIs**: one on bastion's own origin (the issuer's scheme, host and port), and
  plain ``http`` in production (registration allows it only for loopback hosts).
- Delivery is best effort: a node stopped during the retries does not resume them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import urlsplit

from bastion.audit.events import Auditor, EventTypes
from bastion.crypto.digests import random_token
from bastion.errors import BastionError
from bastion.protocol.oidc.backchannel import LOGOUT_TOKEN_TYP, logout_token_claims
from bastion.storage import Database, NotFoundError
from bastion.storage.models import Client
from bastion.storage.sql.repositories import BrowserSession

if TYPE_CHECKING:  # httpx is imported on the first delivery: an idle server never loads it
    import httpx

__all__ = ["BackchannelLogout", "LogoutTokenSigner"]

log = logging.getLogger("bastion.logout")

_TIMEOUT: Final = 5.0
_ATTEMPTS: Final = 3
_BACKOFF: Final = 0.5
_RETRIED: Final = frozenset({408, 429})


class LogoutTokenSigner(Protocol):
    """Signs ``build(alg)`` with the active key of ``alg`` (the client's ID-token algorithm;
    ``None``: the server's default), header ``typ``."""

    def __call__(
        self, build: Callable[[str], dict[str, Any]], alg: str | None, *, typ: str = ...
    ) -> Awaitable[str]: ...


def _origin(uri: str) -> tuple[str, str, int | None]:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    default = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), parts.port or default


class BackchannelLogout:
    """Delivers logout tokens for the sessions ended on this node (see the module
    docstring). ``transport`` replaces httpx's (tests); ``backoff`` is the first pause
    between attempts, doubled each time."""

    def __init__(
        self,
        db: Database,
        issuer: str,
        sign: LogoutTokenSigner,
        auditor: Auditor | None = None,
        *,
        production: bool = False,
        timeout: float = _TIMEOUT,
        attempts: int = _ATTEMPTS,
        backoff: float = _BACKOFF,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.db = db
        self.issuer = issuer
        self.sign = sign
        self.auditor = auditor
        self.production = production
        self.attempts = attempts
        self.backoff = backoff
        self._timeout = timeout
        self._transport = transport
        self._tasks: set[asyncio.Task[None]] = set()

    def session_ended(self, session: BrowserSession) -> None:
        """Deliver the logout tokens of ``session`` in the background."""
        task = asyncio.get_running_loop().create_task(self._deliver_all(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every delivery started so far has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop the deliveries in progress."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _deliver_all(self, session: BrowserSession) -> None:
        try:
            client_ids = await self.db.sessions.clients_of(session.id)
            clients = []
            for client_id in client_ids:
                try:
                    client = await self.db.clients.get(client_id)
                except NotFoundError:
                    continue
                if client.backchannel_logout_uri and not client.disabled:
                    clients.append(client)
            if not clients:
                return
            import httpx

            async with httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, transport=self._transport
            ) as http:
                await asyncio.gather(*(self._deliver(http, c, session) for c in clients))
        except asyncio.CancelledError:
            raise
        except Exception:  # a background task: log, never crash the loop
            log.exception("back-channel logout of session %s failed", session.id)

    async def _deliver(
        self, http: httpx.AsyncClient, client: Client, session: BrowserSession
    ) -> None:
        uri = client.backchannel_logout_uri
        assert uri is not None  # chosen so by _deliver_all
        refused = self._refused(uri)
        if refused is not None:
            self._audit(client, session, "failure", refused, attempts=0)
            return
        claims = logout_token_claims(
            issuer=self.issuer,
            client_id=client.client_id,
            subject=session.user_id,
            session_id=session.id,
            now=int(time.time()),
            jti=random_token(16),
        )
        try:
            token = await self.sign(
                lambda _alg: claims, client.id_token_signed_response_alg, typ=LOGOUT_TOKEN_TYP
            )
        except BastionError as exc:  # the client's algorithm no longer offered, no key
            self._audit(client, session, "failure", f"not_signed: {exc.code}", attempts=0)
            return
        import httpx

        reason = "unreachable"
        for attempt in range(1, self.attempts + 1):
            try:
                response = await http.post(uri, data={"logout_token": token})
            except httpx.HTTPError:
                reason = "unreachable"
            else:
                if response.status_code in (200, 204):
                    self._audit(client, session, "success", None, attempts=attempt)
                    return
                reason = f"status_{response.status_code}"
                if response.status_code < 500 and response.status_code not in _RETRIED:
                    self._audit(client, session, "failure", reason, attempts=attempt)
                    return
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        self._audit(client, session, "failure", reason, attempts=self.attempts)

    def _refused(self, uri: str) -> str | None:
        if _origin(uri) == _origin(self.issuer):
            return "uri_is_bastion"
        if self.production and _origin(uri)[0] != "https":
            return "uri_not_https"
        return None

    def _audit(
        self,
        client: Client,
        session: BrowserSession,
        outcome: Any,
        reason: str | None,
        *,
        attempts: int,
    ) -> None:
        if self.auditor is not None:
            self.auditor.record(
                EventTypes.BACKCHANNEL_LOGOUT,
                outcome,
                reason=reason,
                subject=session.user_id,
                client_id=client.client_id,
                data={"session": session.id, "attempts": attempts},
            )
