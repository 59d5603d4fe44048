"""The authorization endpoint and the consent page (server-rendered).

=========  ================================  ==============================================
method     path                              does
=========  ================================  ==============================================
GET, POST  /oauth2/authorize                 a new authorization request (query or form)
GET        /oauth2/authorize/continue        the kept request again, after the login
GET        /consent?request=<id>             the consent page (client, scopes in words)
POST       /consent                          CSRF check; Allow (remembered) or Deny
=========  ================================  ==============================================

Every answer is a **303**: to the client's redirect URI (``code`` or ``error``, with
``state`` and ``iss``), to ``/login?return_to=…``, or to the consent page — or a page:
an ``AuthorizationPageError`` (unknown client, redirect URI not registered …) is a 400
page and never a redirect; an expired kept request a 400 page; a refused CSRF token or
a consent posted from another user's session a 403 page. The decisions are
:class:`bastion.interaction.authorize.AuthorizationFlow`'s; the rules the protocol
layer's.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.events import EventTypes
from bastion.errors import BastionError
from bastion.gateway.forwarded import request_client_ip
from bastion.http.body import read_bounded
from bastion.http.endpoints.pages import (
    Forms,
    form_action_source,
    message,
    page,
    read_form,
    rendering_csrf_errors,
    see_other,
)
from bastion.http.middleware import get_request_id
from bastion.http.runtime import ControlPlane
from bastion.interaction import SESSION_COOKIE, CsrfTokens
from bastion.interaction.authorize import (
    CONSENT_PATH,
    CONTINUE_PATH,
    AuthorizationFlow,
    ConsentMismatchError,
    ConsentPrompt,
    PendingRequests,
    UnknownPendingRequestError,
    Visitor,
)
from bastion.interaction.consents import ConsentService, describe
from bastion.protocol.rfc6749.authorization import AuthorizationPageError, AuthorizationParameters
from bastion.storage.errors import NotFoundError
from bastion.storage.models import Client
from bastion.ui import render

__all__ = ["AUTHORIZE_PATH", "authorization_views", "authorize_routes"]

AUTHORIZE_PATH: Final = "/oauth2/authorize"
#: Largest authorization request body (the protocol parser's own bound).
_MAX_BODY: Final = 64 * 1024
_MAX_USER_AGENT: Final = 256


class _TooLargeError(BastionError):
    code = "request_too_large"
    status = 413
    title = "Request too large"


class _Authorize:
    """The views over the runtime's sessions, clients, codes and shared state."""

    def __init__(self, runtime: ControlPlane) -> None:
        self.runtime = runtime

    @functools.cached_property
    def flow(self) -> AuthorizationFlow:
        runtime = self.runtime
        sessions = runtime.sessions
        if sessions is None:
            raise RuntimeError("the runtime has no session manager")
        return AuthorizationFlow(
            issuer=runtime.settings.issuer_url,
            find_client=self._find_client,
            sessions=sessions,
            consents=ConsentService(runtime.db, runtime.refresh_tokens, runtime.auditor),
            codes=runtime.authorization_codes,
            pending=PendingRequests(runtime.shared),
            auditor=runtime.auditor,
        )

    @functools.cached_property
    def forms(self) -> Forms:
        return Forms(CsrfTokens.from_keyring(self.runtime.keyring))

    async def _find_client(self, client_id: str) -> Client | None:
        try:
            client = await self.runtime.clients.get(client_id)
        except NotFoundError:
            return None
        return None if client.disabled else client

    # -- views -------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        body = b""
        if request.method == "POST":
            body = await read_bounded(
                request, _MAX_BODY, lambda: _TooLargeError("the request is too large")
            )
        parameters = AuthorizationParameters.from_http(
            request.method,
            request.scope.get("query_string", b""),
            body,
            request.headers.get("content-type"),
        )
        location = await self.flow.authorize(parameters, _session(request), _visitor(request))
        return see_other(location)

    async def resume(self, request: Request) -> Response:
        location = await self.flow.resume(
            request.query_params.get("request"), _session(request), _visitor(request)
        )
        return see_other(location)

    async def consent_page(self, request: Request) -> Response:
        prompt = await self.flow.consent_prompt(
            request.query_params.get("request"), _session(request), _visitor(request)
        )
        if isinstance(prompt, str):
            return see_other(prompt)
        return self._render_consent(request, prompt)

    def _render_consent(self, request: Request, prompt: ConsentPrompt) -> Response:
        cookie, set_cookie = self.forms.csrf_cookie(request)
        html = render(
            "consent.html",
            client_name=prompt.client.name or prompt.client.client_id,
            scopes=[(scope, describe(scope)) for scope in prompt.scope],
            username=prompt.username,
            request_id=prompt.request_id,
            csrf_token=self.forms.csrf.token_for(cookie),
        )
        return page(html, cookies=set_cookie, form_targets=_sources(prompt.redirect_uri))

    async def form_targets(self, return_to: str) -> tuple[str, ...]:
        """The CSP ``form-action`` sources of a login page returning to ``return_to``."""
        redirect_uri = await self.flow.redirect_uri_of(return_to)
        return _sources(redirect_uri) if redirect_uri is not None else ()

    async def consent(self, request: Request) -> Response:
        form = await read_form(request)
        self.forms.check(request, form)
        decision = form.get("decision")
        if decision not in ("allow", "deny"):
            return message("Choose an answer", "Choose Allow or Deny.", 400, link=None)
        location = await self.flow.decide_consent(
            form.get("request"),
            _session(request),
            allow=decision == "allow",
            visitor=_visitor(request),
        )
        return see_other(location)

    def audit_page_error(self, request: Request, error: AuthorizationPageError) -> None:
        """An error page instead of a redirect: ``oauth.authorize`` failure, its reason."""
        visitor = _visitor(request)
        self.runtime.auditor.record(
            EventTypes.AUTHORIZE,
            "failure",
            reason=error.reason,
            request_id=visitor.request_id,
            ip=visitor.ip,
            user_agent=visitor.user_agent,
            client_id=(request.query_params.get("client_id") or "")[:255] or None,
        )


def _sources(redirect_uri: str) -> tuple[str, ...]:
    source = form_action_source(redirect_uri)
    return (source,) if source is not None else ()


def authorization_views(runtime: ControlPlane) -> _Authorize:
    """The views of the authorization endpoint (the login page asks them for its
    ``form-action`` sources)."""
    return _Authorize(runtime)


def _visitor(request: Request) -> Visitor:
    agent = request.headers.get("user-agent")
    return Visitor(
        ip=request_client_ip(request.scope),
        user_agent=agent[:_MAX_USER_AGENT] if agent else None,
        request_id=get_request_id(request.scope),
    )


def _session(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


def _rendering_flow_errors(
    view: Callable[[Request], Awaitable[Response]], views: _Authorize
) -> Callable[[Request], Awaitable[Response]]:
    """The flow's refusals as pages for the user: never a redirect to an unverified URI."""

    @functools.wraps(view)
    async def endpoint(request: Request) -> Response:
        try:
            return await view(request)
        except AuthorizationPageError as exc:
            views.audit_page_error(request, exc)
            return message(
                "Invalid authorization request",
                f"The application sent an invalid request: {exc.error_description}.",
                exc.status,
                link=None,
            )
        except (UnknownPendingRequestError, ConsentMismatchError) as exc:
            return message(exc.title, exc.detail[:1].upper() + exc.detail[1:] + ".", exc.status)

    return endpoint


def authorize_routes(runtime: ControlPlane) -> list[Route]:
    """The authorization endpoint and consent routes for ``runtime``."""
    views = _Authorize(runtime)

    def wrap(view: Callable[[Request], Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        return rendering_csrf_errors(_rendering_flow_errors(view, views))

    return [
        Route(AUTHORIZE_PATH, wrap(views.authorize), methods=["GET", "POST"]),
        Route(CONTINUE_PATH, wrap(views.resume), methods=["GET"]),
        Route(CONSENT_PATH, wrap(views.consent_page), methods=["GET"]),
        Route(CONSENT_PATH, wrap(views.consent), methods=["POST"]),
    ]
