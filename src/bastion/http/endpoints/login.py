"""The browser login: ``/login`` and ``/logout`` (server-rendered; the pages' shared parts are
:mod:`.pages`', the account page is :mod:`.account`).

=======  ============================  ===================================================
method   path                          does
=======  ============================  ===================================================
GET      /login?return_to=/path        the form (sets the CSRF cookie)
POST     /login                        CSRF check, throttle, ``UserOperations.authenticate``;
                                       303 to ``return_to`` with a new session cookie, or the
                                       form again (422, one message for every refusal), or
                                       429 with ``Retry-After``
GET      /logout                       a confirmation form (a GET never ends a session)
POST     /logout                       CSRF check, ends the session, 303 to ``/login``
GET      /login/static/bastion.css     the pages' stylesheet
=======  ============================  ===================================================

A refused CSRF token is a 403 page; every page has :mod:`.pages`' strict headers. Every
attempt is an ``auth.login`` audit event — ``failure`` with the reason
(``unknown_user``, ``bad_password``, ``disabled``, ``no_password``, ``throttled_<lock>``)
and the typed username as ``subject``, which the brute-force and credential-stuffing
detectors count — or ``success`` with the user's id. The session itself is
:mod:`bastion.interaction.sessions`'.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.events import EventTypes
from bastion.credentials.lifecycle import ChangeRecorder
from bastion.gateway.forwarded import request_client_ip
from bastion.http.endpoints.pages import (
    STYLESHEET_PATH,
    BrowserViews,
    Form,
    cookie,
    expired_cookie,
    message_page,
    page,
    read_form,
    rendering_errors,
    see_other,
    stylesheet_view,
)
from bastion.http.middleware import get_request_id
from bastion.http.runtime import ControlPlane
from bastion.interaction import (
    DEFAULT_RETURN_TO,
    SESSION_COOKIE,
    EndReason,
    UnsafeReturnToError,
    check_return_to,
)
from bastion.ratelimit.login import LoginThrottle, LoginThrottledError
from bastion.storage.models import normalize_username
from bastion.ui import render
from bastion.users import InvalidCredentialsError, UserOperations, UserService

__all__ = ["LOGIN_FAILED", "login_routes"]

#: The one message for every refused login: never which of the two was wrong.
LOGIN_FAILED: Final = "The username or password is not correct."
_MISSING: Final = "Enter your username and password."
_MAX_USER_AGENT: Final = 256


def _return_to(value: str | None) -> str:
    # An unsafe or missing address is replaced, not an error: the login still works.
    if not value:
        return DEFAULT_RETURN_TO
    try:
        return check_return_to(value)
    except UnsafeReturnToError:
        return DEFAULT_RETURN_TO


class _Login(BrowserViews):
    """The views, over the runtime's sessions, throttle, users and master key."""

    @functools.cached_property
    def throttle(self) -> LoginThrottle | None:
        return self.runtime.login_throttle

    @functools.cached_property
    def users(self) -> UserOperations:
        auditor = self.runtime.auditor

        def sink(build: Callable[..., Any], *args: Any, **kw: Any) -> None:
            auditor.emit(build(*args, **kw))

        service = UserService(self.runtime.db, self.runtime.settings)
        return UserOperations(service, ChangeRecorder("login", sink))

    # -- shared steps -----------------------------------------------------------------

    def _check_csrf(self, request: Request, form: Form) -> None:
        self.guard.check(request, form)

    def _audit_login(
        self, request: Request, outcome: str, *, subject: str, reason: str | None = None
    ) -> None:
        agent = request.headers.get("user-agent")
        self.runtime.auditor.record(
            EventTypes.LOGIN,
            "success" if outcome == "success" else "failure",
            reason=reason,
            request_id=get_request_id(request.scope),
            ip=request_client_ip(request.scope),
            user_agent=agent[:_MAX_USER_AGENT] if agent else None,
            subject=subject,
        )

    def _form_page(
        self,
        request: Request,
        *,
        return_to: str,
        status: int = 200,
        error: str | None = None,
        username: str = "",
        cookies: tuple[str, ...] = (),
    ) -> Response:
        csrf_token, set_cookie = self.guard.token(request)
        html = render(
            "login.html",
            csrf_token=csrf_token,
            return_to=return_to,
            error=error,
            username=username,
        )
        return page(html, status, cookies=(*cookies, *set_cookie))

    # -- views -------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        return self._form_page(request, return_to=_return_to(request.query_params.get("return_to")))

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        self._check_csrf(request, form)
        return_to = _return_to(form.get("return_to"))
        username, password = form.get("username"), form.get("password")
        if not username or not password:
            return self._form_page(
                request, return_to=return_to, status=422, error=_MISSING, username=username[:255]
            )
        ip = request_client_ip(request.scope)
        account = normalize_username(username[:255])
        if self.throttle is not None:
            try:
                await self.throttle.check(account, ip)
            except LoginThrottledError as exc:
                self._audit_login(
                    request, "failure", subject=account, reason=f"throttled_{exc.scope}"
                )
                return self._throttled(exc)
        try:
            user = await self.users.authenticate(username, password)
        except InvalidCredentialsError as exc:
            if self.throttle is not None:
                await self.throttle.failed(account, ip)
            self._audit_login(request, "failure", subject=account, reason=exc.reason)
            return self._form_page(
                request,
                return_to=return_to,
                status=422,
                error=LOGIN_FAILED,
                username=username[:255],
            )
        if self.throttle is not None:
            await self.throttle.succeeded(account, ip)
        agent = request.headers.get("user-agent")
        started = await self.sessions.start(
            user,
            amr=("pwd",),
            ip=ip,
            user_agent=agent,
            replaces=request.cookies.get(SESSION_COOKIE),
        )
        self._audit_login(request, "success", subject=user.id)
        # Both ids change at login: the session's, and the CSRF cookie's (tokens of the
        # anonymous form are not carried into the signed-in pages).
        cookies = (cookie(SESSION_COOKIE, started.token), self.guard.new_cookie())
        return see_other(return_to, cookies=cookies)

    def _throttled(self, exc: LoginThrottledError) -> Response:
        message = f"Too many failed sign-in attempts. Try again in {exc.retry_after} seconds."
        return message_page("Too many attempts", message, 429, retry_after=exc.retry_after)

    async def logout_form(self, request: Request) -> Response:
        active = await self.signed_in(request)
        csrf_token, set_cookie = self.guard.token(request)
        html = render(
            "logout.html",
            csrf_token=csrf_token,
            username=active.user.username if active else None,
        )
        return page(html, cookies=set_cookie)

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        self._check_csrf(request, form)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            await self.sessions.end(token, EndReason.LOGOUT)
        return see_other("/login", cookies=(expired_cookie(SESSION_COOKIE),))


def login_routes(runtime: ControlPlane) -> list[Route]:
    """The login and logout routes for ``runtime`` (components looked up on use)."""
    views = _Login(runtime)
    return [
        Route("/login", rendering_errors(views.login_form), methods=["GET"]),
        Route("/login", rendering_errors(views.login), methods=["POST"]),
        Route(STYLESHEET_PATH, stylesheet_view, methods=["GET"]),
        Route("/logout", rendering_errors(views.logout_form), methods=["GET"]),
        Route("/logout", rendering_errors(views.logout), methods=["POST"]),
    ]
