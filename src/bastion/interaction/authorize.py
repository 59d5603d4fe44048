"""The authorization endpoint's flow: session → login → consent → code (OIDC Core §3.1.2).

Every rule of the request is the protocol layer's
(:func:`bastion.protocol.rfc6749.authorization.authorization_request`,
:func:`bastion.protocol.oidc.core.required_interaction`); this module decides where
the browser goes next and keeps what must survive the detour through the login:

- A request that needs the user (no session, ``prompt=login``, ``max_age`` passed,
  no consent, ``prompt=consent``) is kept **server-side** in shared state for
  :data:`PENDING_TTL` seconds under a random 256-bit id, with the time it arrived —
  GET and POST requests alike (a POST's parameters never travel through a URL, and no
  ``return_to`` has to hold a whole request). The login returns the browser to
  ``/oauth2/authorize/continue?request=<id>``; the consent page posts the id.
- Continuing re-validates the kept parameters from scratch (the client may have
  been disabled meanwhile) and compares the session's ``auth_time`` and the consent's
  time with when the request **arrived**, so a login or consent during this request
  satisfies ``prompt=login``, ``max_age`` and ``prompt=consent`` without a loop.
- The consent page belongs to the user it was shown to: the kept request records
  that user, and a decision posted from another user's session is refused
  (:class:`ConsentMismatchError`).
- A kept request answers once: it is deleted when the browser is sent back to the
  client (a code, ``access_denied``, any redirect error).
- Every answer sent to the client is an ``oauth.authorize`` audit event: ``success``
  with the user and the scope of the code, or ``failure`` with the error code as the
  reason (``login_required``, ``access_denied``, ``invalid_request`` …); the endpoint
  audits the error pages the same way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, Literal
from urllib.parse import urlencode

import orjson

from bastion.audit.events import Auditor, EventTypes
from bastion.crypto.digests import random_token
from bastion.errors import BastionError
from bastion.interaction.consents import ConsentService
from bastion.interaction.sessions import ActiveSession, SessionManager
from bastion.oauth.authorization_codes import AuthorizationCodeService
from bastion.protocol.oidc.core import Interaction, InteractionRequiredError, required_interaction
from bastion.protocol.rfc6749.authorization import (
    AccessDeniedError,
    AuthorizationParameters,
    AuthorizationRedirectError,
    AuthorizationRequest,
    authorization_request,
)
from bastion.storage.models import Client
from bastion.storage.shared import SharedState

__all__ = [
    "CONSENT_PATH",
    "CONTINUE_PATH",
    "PENDING_TTL",
    "AuthorizationFlow",
    "ConsentMismatchError",
    "ConsentPrompt",
    "PendingRequest",
    "PendingRequests",
    "UnknownPendingRequestError",
    "Visitor",
]

#: Where the login returns the browser to continue a kept request.
CONTINUE_PATH: Final = "/oauth2/authorize/continue"
#: The consent page.
CONSENT_PATH: Final = "/consent"
#: How long a kept request waits for its login and consent (seconds).
PENDING_TTL: Final = 600.0
_PREFIX: Final = "authz-request:"
_MAX_ID: Final = 64

FindClient = Callable[[str], Awaitable[Client | None]]


class UnknownPendingRequestError(BastionError):
    """The kept request is unknown, expired or already answered (400 page)."""

    code = "authorization_request_expired"
    status = 400
    title = "Sign-in request expired"


class ConsentMismatchError(BastionError):
    """A consent decision posted from a session of another user than the one the
    consent page was shown to (403 page, nothing decided)."""

    code = "consent_user_mismatch"
    status = 403
    title = "Consent belongs to another sign-in"


@dataclass(frozen=True, slots=True)
class Visitor:
    """Who is asking, for the audit log: the browser's address, user agent, request id."""

    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None


_NOBODY: Final = Visitor()


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """An authorization request waiting for the user: its parameters (every value), when
    it arrived (epoch seconds), and the user its consent page was shown to."""

    id: str
    parameters: Mapping[str, tuple[str, ...]]
    requested_at: float
    consent_user: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "parameters": {name: list(values) for name, values in self.parameters.items()},
                "requested_at": self.requested_at,
                "consent_user": self.consent_user,
            }
        )

    @classmethod
    def from_json(cls, request_id: str, raw: bytes) -> PendingRequest:
        data = orjson.loads(raw)
        return cls(
            id=request_id,
            parameters={name: tuple(values) for name, values in data["parameters"].items()},
            requested_at=float(data["requested_at"]),
            consent_user=data.get("consent_user"),
        )


class PendingRequests:
    """Kept requests in shared state (every node sees them with Redis)."""

    def __init__(self, shared: SharedState, *, ttl: float = PENDING_TTL) -> None:
        self.shared = shared
        self.ttl = ttl

    async def save(self, pending: PendingRequest) -> PendingRequest:
        """Store ``pending`` (a new id when it has none) for :attr:`ttl` seconds."""
        kept = pending if pending.id else replace(pending, id=random_token(32))
        await self.shared.set(_PREFIX + kept.id, kept.to_json(), ttl=self.ttl)
        return kept

    async def get(self, request_id: str | None) -> PendingRequest:
        """The kept request ``request_id``.

        Raises:
            UnknownPendingRequestError: unknown, expired or answered.
        """
        if not request_id or len(request_id) > _MAX_ID:
            raise UnknownPendingRequestError("the sign-in request is unknown")
        raw = await self.shared.get(_PREFIX + request_id)
        if raw is None:
            raise UnknownPendingRequestError(
                "the sign-in request has expired or was already answered; "
                "go back to the application and start again"
            )
        return PendingRequest.from_json(request_id, raw)

    async def delete(self, request_id: str) -> bool:
        """Forget the kept request (it has been answered); whether it was still kept — of
        two answers racing for one request, exactly one sees ``True``."""
        return bool(request_id) and await self.shared.delete(_PREFIX + request_id)


@dataclass(frozen=True, slots=True)
class ConsentPrompt:
    """What the consent page shows: the client, the scopes, the user, the kept request."""

    client: Client
    scope: tuple[str, ...]
    username: str
    request_id: str
    redirect_uri: str


@dataclass(frozen=True, slots=True)
class _Validated:
    request: AuthorizationRequest
    client: Client


class AuthorizationFlow:
    """Decides each step of an authorization request (see the module docstring).

    Every public method returns the ``Location`` of a 303: the client's redirect URI
    (a code or an error, with ``state`` and ``iss``), the login, or the consent page.

    Raises ``AuthorizationPageError`` (an error page, never a redirect) as
    :func:`~bastion.protocol.rfc6749.authorization.authorization_request` does.
    """

    def __init__(
        self,
        *,
        issuer: str,
        find_client: FindClient,
        sessions: SessionManager,
        consents: ConsentService,
        codes: AuthorizationCodeService,
        pending: PendingRequests,
        auditor: Auditor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.auditor = auditor
        self.issuer = issuer
        self.find_client = find_client
        self.sessions = sessions
        self.consents = consents
        self.codes = codes
        self.pending = pending
        self.clock = clock

    async def authorize(
        self,
        parameters: AuthorizationParameters,
        session_token: str | None,
        visitor: Visitor = _NOBODY,
    ) -> str:
        """A new authorization request (``GET|POST /oauth2/authorize``)."""
        fresh = PendingRequest(id="", parameters=parameters.values, requested_at=self.clock())
        return await self._decide(fresh, session_token, visitor)

    async def resume(
        self, request_id: str | None, session_token: str | None, visitor: Visitor = _NOBODY
    ) -> str:
        """Continue a kept request after the login.

        Raises:
            UnknownPendingRequestError: the kept request is unknown or expired.
        """
        return await self._decide(await self.pending.get(request_id), session_token, visitor)

    async def consent_prompt(
        self, request_id: str | None, session_token: str | None, visitor: Visitor = _NOBODY
    ) -> ConsentPrompt | str:
        """What the consent page shows for the kept request, or where the browser goes
        instead (the login, when the session is gone or another user signed in).

        Raises:
            UnknownPendingRequestError: the kept request is unknown or expired.
        """
        pending = await self.pending.get(request_id)
        active = await self.sessions.resolve(session_token)
        if active is None or active.user.id != pending.consent_user:
            # Decide again for whoever is signed in now (a login, or their consent page).
            return await self._decide(pending, session_token, visitor)
        validated = await self._validate(pending, visitor)
        if isinstance(validated, str):
            return validated
        return ConsentPrompt(
            client=validated.client,
            scope=validated.request.scope,
            username=active.user.username,
            request_id=pending.id,
            redirect_uri=validated.request.redirect_uri,
        )

    async def redirect_uri_of(self, return_to: str) -> str | None:
        """The validated redirect URI of the kept request a login's ``return_to`` continues
        (``None``: not a continuation, or nothing valid kept) — what the login page's
        ``form-action`` must allow, for the redirects after its form to reach the client."""
        prefix = CONTINUE_PATH + "?request="
        if not return_to.startswith(prefix):
            return None
        try:
            pending = await self.pending.get(return_to[len(prefix) :])
            request = await authorization_request(
                _parameters(pending), find_client=self.find_client, issuer=self.issuer
            )
        except (BastionError, ValueError):
            return None
        return request.redirect_uri

    async def decide_consent(
        self,
        request_id: str | None,
        session_token: str | None,
        *,
        allow: bool,
        visitor: Visitor = _NOBODY,
    ) -> str:
        """The user's answer on the consent page: remember it and issue the code (allow),
        or send ``access_denied`` to the client (deny).

        Raises:
            UnknownPendingRequestError: the kept request is unknown or expired.
            ConsentMismatchError: the session is not the user the page was shown to.
        """
        pending = await self.pending.get(request_id)
        active = await self.sessions.resolve(session_token)
        if active is None:
            return self._login_location(await self.pending.save(pending), None)
        if active.user.id != pending.consent_user:
            raise ConsentMismatchError(
                "this consent page was shown to another user; go back to the application "
                "and start again"
            )
        validated = await self._validate(pending, visitor)
        if isinstance(validated, str):
            return validated
        if not allow:
            await self.pending.delete(pending.id)
            denied = AccessDeniedError("the user denied the request", reason="consent_denied")
            self._audit(visitor, validated.request, denied.code, subject=active.user.id)
            return validated.request.error(denied).location
        await self.consents.give(
            active.user.id,
            validated.client.client_id,
            validated.request.scope,
            ip=visitor.ip,
            user_agent=visitor.user_agent,
            request_id=visitor.request_id,
        )
        return await self._decide(pending, session_token, visitor)

    # -- steps ---------------------------------------------------------------------------

    async def _validate(
        self, pending: PendingRequest, visitor: Visitor = _NOBODY
    ) -> _Validated | str:
        """The request re-validated, or the redirect of its error (the request answered)."""
        found: dict[str, Client] = {}

        async def find(client_id: str) -> Client | None:
            client = await self.find_client(client_id)
            if client is not None:
                found[client_id] = client
            return client

        try:
            request = await authorization_request(
                _parameters(pending), find_client=find, issuer=self.issuer
            )
        except AuthorizationRedirectError as error:
            await self.pending.delete(pending.id)
            self._record(visitor, "failure", error.code, client_id=_client_id(pending))
            return error.location
        return _Validated(request, found[request.client_id])

    async def _decide(
        self, pending: PendingRequest, session_token: str | None, visitor: Visitor
    ) -> str:
        validated = await self._validate(pending, visitor)
        if isinstance(validated, str):
            return validated
        request, client = validated.request, validated.client
        active = await self.sessions.resolve(session_token)
        consented_at = None
        if active is not None:
            consented_at = await self.consents.consented_at(
                active.user.id, client.client_id, request.scope
            )
        try:
            needed = required_interaction(
                prompt=request.prompt,
                max_age=request.max_age,
                auth_time=active.session.auth_time.timestamp() if active else None,
                consented_at=consented_at,
                requested_at=pending.requested_at,
                now=self.clock(),
            )
        except InteractionRequiredError as error:
            await self.pending.delete(pending.id)
            self._audit(visitor, request, error.code, subject=active.user.id if active else None)
            return request.error(error).location
        if needed is Interaction.LOGIN or active is None:
            return self._login_location(await self.pending.save(pending), request.login_hint)
        if needed is not None:  # consent (nothing else is asked of a user yet)
            kept = await self.pending.save(replace(pending, consent_user=active.user.id))
            return f"{CONSENT_PATH}?{urlencode({'request': kept.id})}"
        if pending.id and not await self.pending.delete(pending.id):
            # Answered meanwhile (a second tab, a double click): one request, one code.
            raise UnknownPendingRequestError("the sign-in request was already answered")
        code = await self._issue(request, client, active)
        self._audit(visitor, request, None, subject=active.user.id)
        return request.success_location(code)

    def _audit(
        self,
        visitor: Visitor,
        request: AuthorizationRequest,
        error: str | None,
        *,
        subject: str | None,
    ) -> None:
        self._record(
            visitor,
            "failure" if error else "success",
            error,
            client_id=request.client_id,
            subject=subject,
            data={"scope": " ".join(request.scope)},
        )

    def _record(
        self,
        visitor: Visitor,
        outcome: Literal["success", "failure"],
        reason: str | None,
        *,
        client_id: str | None,
        subject: str | None = None,
        data: Mapping[str, str] | None = None,
    ) -> None:
        if self.auditor is not None:
            self.auditor.record(
                EventTypes.AUTHORIZE,
                outcome,
                reason=reason,
                request_id=visitor.request_id,
                ip=visitor.ip,
                user_agent=visitor.user_agent,
                subject=subject,
                client_id=client_id,
                data=data,
            )

    async def _issue(
        self, request: AuthorizationRequest, client: Client, active: ActiveSession
    ) -> str:
        session = active.session
        # Back-channel logout reaches every client that obtained a code in this session.
        await self.sessions.signed_into(session.id, client.client_id)
        return await self.codes.issue(
            client,
            active.user.id,
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scope),
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            auth_time=session.auth_time.timestamp(),
            acr=session.acr,
            amr=session.amr,
            session_id=session.id,
        )

    @staticmethod
    def _login_location(pending: PendingRequest, login_hint: str | None) -> str:
        query = {"return_to": f"{CONTINUE_PATH}?{urlencode({'request': pending.id})}"}
        if login_hint:
            query["login_hint"] = login_hint
        return f"/login?{urlencode(query)}"


def _client_id(pending: PendingRequest) -> str | None:
    found = pending.parameters.get("client_id", ())
    return found[0][:255] if len(found) == 1 else None


def _parameters(pending: PendingRequest) -> AuthorizationParameters:
    return AuthorizationParameters(dict(pending.parameters))
