"""RP-initiated logout: ``GET|POST /oauth2/logout`` (OpenID Connect RP-Initiated Logout 1.0).

The relying party sends the browser here with ``id_token_hint``, ``client_id``,
``post_logout_redirect_uri`` and ``state`` (the rules: :mod:`bastion.protocol.oidc.logout`).

- **The hint** is verified with bastion's own keys (signature, ``iss``, ``typ: JWT``) but
  may have expired (§2). Its ``aud`` names the client; a ``client_id`` beside it must be
  the same one. A forged, foreign or malformed hint is refused (400 page).
- **The redirect** goes only to a URI the client registered
  (``post_logout_redirect_uris``), compared exactly, with ``state`` appended; without an
  identified client a ``post_logout_redirect_uri`` is refused. Every refusal is a page,
  never a redirect, and an ``oauth.logout`` failure event with its reason.
- **Proof or confirmation**: the session ends at once only when the hint proves the
  request comes from a relying party of *this* session — its ``sid`` is the browser's
  session and its ``sub`` the session's user. Otherwise (no hint, an old session's
  hint, another user's) the browser gets a confirmation page with a CSRF-protected form
  and no script; its POST (``confirm=yes`` with the CSRF token: else 403) ends the
  session. A GET never ends a session without that proof, so a cross-site link or image
  cannot sign anyone out.
- **Ending** is :meth:`SessionManager.end` with reason ``rp_logout`` (the audit event,
  the ``sessions`` feed channel, back-channel notices where registered), the session
  cookie expired, then 303 to the registered URI, or the "You are signed out" page.
  Without a live session there is nothing to end: the same redirect or page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.events import EventTypes, Outcome
from bastion.crypto import InvalidTokenError, JWTVerifier
from bastion.gateway.forwarded import request_client_ip
from bastion.http.endpoints.pages import (
    BrowserViews,
    expired_cookie,
    form_action_source,
    message,
    page,
    read_form,
    rendering_csrf_errors,
    see_other,
)
from bastion.http.middleware import get_request_id
from bastion.http.runtime import ControlPlane
from bastion.interaction import SESSION_COOKIE, ActiveSession, EndReason
from bastion.protocol.oidc.logout import (
    InvalidLogoutRequestError,
    LogoutRequest,
    check_post_logout_redirect_uri,
    hint_client,
    parse_logout_request,
    post_logout_redirect,
)
from bastion.storage.errors import NotFoundError
from bastion.storage.models import Client
from bastion.ui import render

__all__ = ["LOGOUT_PATH", "logout_routes"]

LOGOUT_PATH: Final = "/oauth2/logout"
_ID_TOKEN_TYP: Final = "JWT"  # noqa: S105 - a media type, not a password
_MAX_USER_AGENT: Final = 256


class _Checked:
    """A logout request after its checks: the client (if identified), the verified
    hint's claims (if any), where to go afterwards."""

    __slots__ = ("claims", "client", "request", "target")

    def __init__(
        self,
        request: LogoutRequest,
        client: Client | None,
        claims: Mapping[str, Any] | None,
        target: str | None,
    ) -> None:
        self.request = request
        self.client = client
        self.claims = claims
        self.target = target


class _Logout(BrowserViews):
    """The logout endpoint's views over the runtime's keys, clients and sessions."""

    def _verifier(self) -> JWTVerifier:
        return JWTVerifier(
            self.runtime.signing_keys.public_key_set,
            issuer=self.runtime.settings.issuer_url,
            audience=None,
            typ=_ID_TOKEN_TYP,
            required_claims=("iss", "sub", "aud", "iat"),
            accept_expired=True,
        )

    async def _check(self, request: LogoutRequest) -> _Checked:
        claims: Mapping[str, Any] | None = None
        client_id = request.client_id
        if request.id_token_hint is not None:
            try:
                claims = self._verifier().verify(request.id_token_hint).claims
            except InvalidTokenError as exc:
                raise InvalidLogoutRequestError(
                    "the id_token_hint is not a valid ID token of this server",
                    reason=f"id_token_hint_{exc.reason}",
                ) from None
            hinted = hint_client(claims)
            if client_id is not None and client_id != hinted:
                raise InvalidLogoutRequestError(
                    "the client_id is not the id_token_hint's audience",
                    reason="client_id_mismatch",
                )
            client_id = hinted
        client: Client | None = None
        if client_id is not None:
            try:
                client = await self.runtime.db.clients.get(client_id)
            except NotFoundError:
                raise InvalidLogoutRequestError(
                    "the client is unknown", reason="unknown_client"
                ) from None
        target = None
        if request.post_logout_redirect_uri is not None:
            check_post_logout_redirect_uri(
                request.post_logout_redirect_uri,
                client.client_id if client is not None else None,
                client.post_logout_redirect_uris if client is not None else (),
            )
            if client is not None and client.disabled:
                raise InvalidLogoutRequestError("the client is disabled", reason="client_disabled")
            target = post_logout_redirect(request.post_logout_redirect_uri, request.state)
        return _Checked(request, client, claims, target)

    # -- views -------------------------------------------------------------------------

    async def logout(self, request: Request) -> Response:
        confirmed = False
        if request.method == "POST":
            form = await read_form(request)
            confirmed = "confirm" in form.fields
            if confirmed:
                self.forms.check(request, form)  # CsrfError: 403 page
            params: Mapping[str, Sequence[str]] = {k: [v] for k, v in form.fields.items()}
        else:
            params = parse_qs(request.url.query, keep_blank_values=True)
        try:
            checked = await self._check(parse_logout_request(params))
        except InvalidLogoutRequestError as exc:
            self._audit(request, "failure", exc.reason, params.get("client_id", [None])[0])
            return message(
                "Invalid logout request",
                f"The application sent an invalid logout request: {exc.error_description}.",
                exc.status,
                link=None,
            )
        active = await self.signed_in(request)
        if active is not None and not confirmed and not _proves(checked.claims, active):
            return self._confirmation(request, checked, active)
        if active is not None:
            token = request.cookies.get(SESSION_COOKIE)
            if token:
                await self.sessions.end(token, EndReason.RP_LOGOUT)
        client_id = checked.client.client_id if checked.client is not None else None
        self._audit(request, "success", "confirmed" if confirmed else None, client_id)
        cookies = (expired_cookie(SESSION_COOKIE),) if active is not None else ()
        if checked.target is not None:
            return see_other(checked.target, cookies=cookies)
        html = render(
            "message.html",
            title="You are signed out",
            message="You are signed out.",
            link="/login",
            link_text="Sign in again",
        )
        return page(html, cookies=cookies)

    def _confirmation(self, request: Request, checked: _Checked, active: ActiveSession) -> Response:
        csrf_token, set_cookie = self.forms.token(request)
        asked = checked.request
        fields = [
            (name, value)
            for name, value in (
                ("id_token_hint", asked.id_token_hint),
                ("client_id", asked.client_id),
                ("post_logout_redirect_uri", asked.post_logout_redirect_uri),
                ("state", asked.state),
            )
            if value is not None
        ]
        html = render(
            "rp_logout.html",
            client_name=checked.client.name if checked.client is not None else None,
            username=active.user.username,
            csrf_token=csrf_token,
            fields=fields,
        )
        # The form's POST ends in a redirect to the client: browsers check form-action on it.
        source = form_action_source(asked.post_logout_redirect_uri or "")
        targets = (source,) if checked.target is not None and source is not None else ()
        return page(html, cookies=set_cookie, form_targets=targets)

    def _audit(
        self, request: Request, outcome: Outcome, reason: str | None, client_id: str | None
    ) -> None:
        agent = request.headers.get("user-agent")
        self.runtime.auditor.record(
            EventTypes.LOGOUT,
            outcome,
            reason=reason,
            request_id=get_request_id(request.scope),
            ip=request_client_ip(request.scope),
            user_agent=agent[:_MAX_USER_AGENT] if agent else None,
            client_id=(client_id or "")[:255] or None,
        )


def _proves(claims: Mapping[str, Any] | None, active: ActiveSession) -> bool:
    """Whether a verified hint was issued for this very session (its ``sid``) and user."""
    if claims is None:
        return False
    return claims.get("sid") == active.session.id and claims.get("sub") == active.user.id


def logout_routes(runtime: ControlPlane) -> list[Route]:
    """``/oauth2/logout`` (GET and POST) for ``runtime``."""
    views = _Logout(runtime)
    return [Route(LOGOUT_PATH, rendering_csrf_errors(views.logout), methods=["GET", "POST"])]
