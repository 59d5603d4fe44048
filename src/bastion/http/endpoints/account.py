"""The account page: what a signed-in user sees and changes of their own (server-rendered).

=======  ==============================  ===============================================
method   path                            does
=======  ==============================  ===============================================
GET      /account                        the page: who, sessions, password, API keys
POST     /account/password               change the password: the current one first
POST     /account/sessions/end           sign out one of the user's sessions
POST     /account/sessions/end-others    sign out every session but this one
POST     /account/keys                   create an API key (``users.self_service_keys``)
POST     /account/keys/revoke            revoke one of the user's own API keys
POST     /account/consents/revoke        revoke a consent (and that client's refresh tokens)
=======  ==============================  ===============================================

Every view needs a live session (else 303 to the login, back here afterwards); every POST
carries the CSRF token and answers 303 back to ``/account?done=<what>`` (a fixed word the
page turns into a message; nothing of the request is echoed) or the page again with 422
and the reason. A new API key is shown once, on a ``no-store`` page of its own.

Changing the password verifies the current one (one argon2id verify, throttled like the
login: the same locks by account and address), applies the policy, ends the user's other
sessions on every node (the ``users`` channel) and gives this browser a new session id.
A session or key that is not the user's own is "not found", whatever it is.

The consented applications are the user's remembered consents (``interaction/consents.py``),
one row per client with its scope sets; **Revoke** takes back every consent to that client
and the client's refresh tokens for the user (with the access tokens they issued), exactly
as the admin API and ``bastion users revoke-consent`` do, audited as ``consent.revoked``
with the actor ``user:<id>``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.apikeys import ApiKeySpec, ApiKeySpecError
from bastion.apikeys.operations import ApiKeyOperations
from bastion.apikeys.views import api_key_view
from bastion.credentials.lifecycle import ChangeRecorder
from bastion.gateway.forwarded import request_client_ip
from bastion.http.endpoints.pages import (
    BrowserViews,
    Form,
    View,
    cookie,
    message,
    page,
    read_form,
    rendering_csrf_errors,
    see_other,
)
from bastion.http.middleware import get_request_id
from bastion.http.runtime import ControlPlane
from bastion.interaction import (
    SESSION_COOKIE,
    ActiveSession,
    EndReason,
)
from bastion.ratelimit.login import LoginThrottledError
from bastion.storage import NotFoundError
from bastion.storage.models import normalize_username
from bastion.storage.sql.repositories import Consent
from bastion.ui import render
from bastion.users import (
    InvalidCredentialsError,
    UserOperations,
    UserService,
    WeakPasswordError,
)

__all__ = ["ACCOUNT_PATH", "DONE_MESSAGES", "account_routes"]

ACCOUNT_PATH: Final = "/account"
#: What ``?done=`` may say (anything else says nothing).
DONE_MESSAGES: Final = {
    "password": "Your password was changed. Your other sessions were signed out.",
    "session": "The session was signed out.",
    "others": "Every other session was signed out.",
    "key_revoked": "The API key was revoked.",
    "consent_revoked": "The application's access was revoked.",
}
_WRONG_CURRENT: Final = "Your current password is not correct."
_MISMATCH: Final = "The new password and its confirmation differ."
_MAX_USER_AGENT: Final = 256
_MAX_KEY_NAME: Final = 100


class _Account(BrowserViews):
    """The views, over the runtime's sessions, users, API keys and throttle."""

    def _recorder(self, request: Request, user_id: str) -> ChangeRecorder:
        auditor = self.runtime.auditor
        ip = request_client_ip(request.scope)
        request_id = get_request_id(request.scope)

        def sink(build: Callable[..., Any], *args: Any, **kw: Any) -> None:
            auditor.emit(build(*args, request_id=request_id, ip=ip, **kw))

        # The actor is the user themselves: "user:<id>" (an admin's is "admin:<subject>").
        return ChangeRecorder(f"user:{user_id}", sink)

    def _users(self, request: Request, user_id: str) -> UserOperations:
        service = UserService(self.runtime.db, self.runtime.settings)
        return UserOperations(service, self._recorder(request, user_id))

    def _user_ops(self, request: Request, user_id: str) -> UserOperations:
        """The user operations with the server's refresh-token service (its revocations
        reach the native caches at once)."""
        service = UserService(self.runtime.db, self.runtime.settings)
        recorder = self._recorder(request, user_id)
        return UserOperations(service, recorder, self.runtime.refresh_tokens)

    def _keys(self, request: Request, user_id: str) -> ApiKeyOperations:
        return ApiKeyOperations(self.runtime.api_keys, self._recorder(request, user_id))

    # -- shared steps -----------------------------------------------------------------

    async def _own_keys(self, user_id: str) -> list[dict[str, Any]]:
        page_ = await self.runtime.db.api_keys.list(owner_type="user", owner_id=user_id, limit=100)
        now = datetime.now(UTC)
        return [api_key_view(key, now) for key in page_.items]

    async def _consented(self, user_id: str) -> list[dict[str, Any]]:
        """The user's consented applications: per client its name, scope sets and the
        newest consent's time, by client name."""
        by_client: dict[str, list[Consent]] = {}
        for consent in await self.runtime.db.consents.list_for_user(user_id):
            by_client.setdefault(consent.client_id, []).append(consent)
        apps = []
        for client_id, consents in by_client.items():
            try:
                name = (await self.runtime.db.clients.get(client_id)).name
            except NotFoundError:
                name = ""
            scopes = sorted({scope for c in consents for scope in c.scope.split()})
            apps.append(
                {
                    "client_id": client_id,
                    "name": name or client_id,
                    "scopes": scopes,
                    "at": max(c.created_at for c in consents),
                }
            )
        return sorted(apps, key=lambda app: (app["name"].casefold(), app["client_id"]))

    async def _page(
        self,
        request: Request,
        active: ActiveSession,
        *,
        status: int = 200,
        error: str | None = None,
        done: str | None = None,
    ) -> Response:
        csrf_token, set_cookie = self.forms.token(request)
        keys_settings = self.runtime.settings.users.self_service_keys
        html = render(
            "account.html",
            user=active.user,
            session=active.session,
            sessions=await self.sessions.live_for_user(active.user.id),
            keys=await self._own_keys(active.user.id),
            apps=await self._consented(active.user.id),
            keys_settings=keys_settings,
            csrf_token=csrf_token,
            error=error,
            done=DONE_MESSAGES.get(done or ""),
        )
        return page(html, status, cookies=set_cookie)

    # -- views -------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        active = await self.signed_in(request)
        if active is None:
            return _to_login()
        return await self._page(request, active, done=request.query_params.get("done"))

    def _post(self, handle: Callable[[Request, ActiveSession, Form], Any]) -> View:
        """A POST view: a live session, then the CSRF check, then ``handle``."""

        async def view(request: Request) -> Response:
            active = await self.signed_in(request)
            if active is None:
                return _to_login()
            form = await read_form(request)
            self.forms.check(request, form)
            response: Response = await handle(request, active, form)
            return response

        return view

    async def change_password(
        self, request: Request, active: ActiveSession, form: Form
    ) -> Response:
        current, new = form.get("current_password"), form.get("new_password")
        if not current or not new:
            return await self._page(request, active, status=422, error="Fill in every field.")
        if new != form.get("confirm_password"):
            return await self._page(request, active, status=422, error=_MISMATCH)
        user = active.user
        ip = request_client_ip(request.scope)
        account = normalize_username(user.username)
        throttle = self.runtime.login_throttle
        if throttle is not None:
            try:
                await throttle.check(account, ip)
            except LoginThrottledError as exc:
                text = f"Too many failed attempts. Try again in {exc.retry_after} seconds."
                return message(
                    "Too many attempts",
                    text,
                    429,
                    retry_after=exc.retry_after,
                    link=ACCOUNT_PATH,
                    link_text="Your account",
                )
        try:
            changed = await self._users(request, user.id).change_password(user, current, new)
        except InvalidCredentialsError:
            if throttle is not None:
                await throttle.failed(account, ip)
            return await self._page(request, active, status=422, error=_WRONG_CURRENT)
        except WeakPasswordError as exc:
            return await self._page(request, active, status=422, error=exc.detail)
        if throttle is not None:
            await throttle.succeeded(account, ip)
        agent = request.headers.get("user-agent")
        # The old session (started before the change) ends: this browser gets a new one.
        started = await self.sessions.start(
            changed,
            amr=active.session.amr,
            acr=active.session.acr,
            ip=ip,
            user_agent=agent[:_MAX_USER_AGENT] if agent else None,
            replaces=request.cookies.get(SESSION_COOKIE),
        )
        cookies = (cookie(SESSION_COOKIE, started.token), self.forms.new_cookie())
        return see_other(f"{ACCOUNT_PATH}?done=password", cookies=cookies)

    async def end_session(self, request: Request, active: ActiveSession, form: Form) -> Response:
        session_id = form.get("session_id")
        if session_id == active.session.id:
            # Signing out this very session is the logout.
            await self.sessions.end_own(active.user.id, session_id, EndReason.LOGOUT)
            return see_other("/login")
        if not await self.sessions.end_own(active.user.id, session_id, EndReason.SIGNED_OUT):
            return await self._page(
                request, active, status=404, error="That session is not one of yours, or ended."
            )
        return see_other(f"{ACCOUNT_PATH}?done=session")

    async def end_others(self, request: Request, active: ActiveSession, form: Form) -> Response:
        await self.sessions.end_others(active.user.id, active.session.id, EndReason.SIGNED_OUT)
        return see_other(f"{ACCOUNT_PATH}?done=others")

    async def revoke_key(self, request: Request, active: ActiveSession, form: Form) -> Response:
        key_id = form.get("key_id")
        own = {key["id"] for key in await self._own_keys(active.user.id)}
        if key_id not in own:
            return await self._page(
                request, active, status=404, error="That API key is not one of yours."
            )
        await self._keys(request, active.user.id).change_state("revoke", key_id)
        return see_other(f"{ACCOUNT_PATH}?done=key_revoked")

    async def revoke_consent(self, request: Request, active: ActiveSession, form: Form) -> Response:
        client_id = form.get("client_id")
        try:
            await self._user_ops(request, active.user.id).revoke_consent(active.user.id, client_id)
        except NotFoundError:
            return await self._page(
                request, active, status=404, error="You have not allowed that application."
            )
        return see_other(f"{ACCOUNT_PATH}?done=consent_revoked")

    async def create_key(self, request: Request, active: ActiveSession, form: Form) -> Response:
        allowed = self.runtime.settings.users.self_service_keys
        if not allowed.enabled:
            return await self._page(
                request, active, status=403, error="Creating API keys here is turned off."
            )
        name = form.get("name").strip()
        if not name or len(name) > _MAX_KEY_NAME:
            return await self._page(
                request, active, status=422, error="Name the key (1-100 characters)."
            )
        scopes = [s for s in form.get("scopes").split() if s]
        if any(scope not in allowed.scopes for scope in scopes):
            return await self._page(
                request, active, status=422, error="Pick scopes from the list only."
            )
        live = [key for key in await self._own_keys(active.user.id) if key["status"] != "revoked"]
        if len(live) >= allowed.max_per_user:
            return await self._page(
                request,
                active,
                status=422,
                error=f"You hold {allowed.max_per_user} API keys already: revoke one first.",
            )
        spec = ApiKeySpec(
            name=name,
            owner_type="user",
            owner_id=active.user.id,
            scopes=tuple(dict.fromkeys(scopes)),
            expires_at=datetime.now(UTC) + timedelta(seconds=allowed.lifetime),
        )
        try:
            created = await self._keys(request, active.user.id).create(
                spec, ["name", "owner", "scopes", "expires_at"]
            )
        except ApiKeySpecError as exc:
            return await self._page(request, active, status=422, error=exc.detail)
        return page(render("key_created.html", key=created))


def _to_login() -> Response:
    return see_other("/login?return_to=" + quote(ACCOUNT_PATH, safe="/"))


def account_routes(runtime: ControlPlane) -> list[Route]:
    """The account page's routes for ``runtime`` (components looked up on use)."""
    views = _Account(runtime)
    posts = {
        "/account/password": views.change_password,
        "/account/sessions/end": views.end_session,
        "/account/sessions/end-others": views.end_others,
        "/account/keys": views.create_key,
        "/account/keys/revoke": views.revoke_key,
        "/account/consents/revoke": views.revoke_consent,
    }
    return [
        Route(ACCOUNT_PATH, rendering_csrf_errors(views.show), methods=["GET"]),
        *(
            Route(path, rendering_csrf_errors(views._post(handle)), methods=["POST"])
            for path, handle in posts.items()
        ),
    ]
