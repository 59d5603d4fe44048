"""What every server-rendered page of bastion shares: headers, cookies, forms, CSRF, errors.

The login (``login.py``), the account page (``account.py``) and the OpenID Connect
interaction pages render HTML with :func:`page`: ``Cache-Control: no-store``, a strict
CSP (no script at all, styles only from bastion, forms only to bastion, never framed),
``Referrer-Policy: no-referrer`` and ``nosniff``. A form is read by :func:`read_form`
(bounded size and field count, UTF-8) and checked by :class:`FormGuard` (the signed
double-submit CSRF token of :mod:`bastion.interaction.csrf`); a refused token is a 403
page (:func:`rendering_errors`), never problem+json. Every cookie is
``Path=/; Secure; HttpOnly; SameSite=Lax`` (:func:`cookie`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from bastion.http.body import read_bounded
from bastion.http.errors import PayloadTooLargeError
from bastion.http.runtime import ControlPlane
from bastion.interaction import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    ActiveSession,
    CsrfError,
    CsrfTokens,
    SessionManager,
)
from bastion.ui import render, stylesheet

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "STYLESHEET_PATH",
    "BrowserViews",
    "Form",
    "FormGuard",
    "View",
    "cookie",
    "expired_cookie",
    "message_page",
    "page",
    "read_form",
    "rendering_errors",
    "see_other",
    "stylesheet_view",
]

#: The pages' policy: no script, no plugin, nothing from elsewhere, posted only to bastion.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: Where the pages' one stylesheet is served.
STYLESHEET_PATH: Final = "/login/static/bastion.css"
_COOKIE_ATTRIBUTES: Final = "Path=/; Secure; HttpOnly; SameSite=Lax"
# A username, a password (≤ 4096 characters) and two tokens; no form of ours is bigger.
_MAX_FORM: Final = 16 * 1024
_MAX_FIELDS: Final = 10

View = Callable[[Request], Awaitable[Response]]


@dataclass
class Form:
    """What a browser posted: the fields it sent (the last of repeated ones: none repeat)."""

    fields: dict[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def cookie(name: str, value: str) -> str:
    """A ``Set-Cookie`` value for a cookie of bastion's pages."""
    return f"{name}={value}; {_COOKIE_ATTRIBUTES}"


def expired_cookie(name: str) -> str:
    """A ``Set-Cookie`` value that removes the cookie ``name``."""
    return f"{name}=; Max-Age=0; {_COOKIE_ATTRIBUTES}"


def page(
    body: str, status: int = 200, *, cookies: tuple[str, ...] = (), **headers: str
) -> Response:
    """An HTML page with the strict headers; ``headers`` by name (``retry_after=…``)."""
    response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
    response.headers["cache-control"] = "no-store"
    response.headers["content-security-policy"] = CONTENT_SECURITY_POLICY
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["x-content-type-options"] = "nosniff"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    for value in cookies:
        response.headers.append("set-cookie", value)
    return response


def see_other(location: str, *, cookies: tuple[str, ...] = ()) -> Response:
    """The 303 after a POST (or to a login), with the pages' headers."""
    response = page("", 303, cookies=cookies, location=location)
    del response.headers["content-type"]
    return response


def message_page(
    title: str,
    message: str,
    status: int,
    *,
    retry_after: int | None = None,
    link: str = "/login",
    link_text: str = "Sign in",
) -> Response:
    """A page that only says something (an error, a refusal), with one link on."""
    html = render("message.html", title=title, message=message, link=link, link_text=link_text)
    if retry_after is None:
        return page(html, status)
    return page(html, status, retry_after=str(retry_after))


async def read_form(request: Request) -> Form:
    """The posted form (at most 16 KiB and 10 fields; anything else reads as empty, so its
    CSRF check fails)."""
    body = await read_bounded(request, _MAX_FORM, PayloadTooLargeError)
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except ValueError:  # not UTF-8, or more fields than any form of ours
        return Form({})
    return Form({name: values[-1] for name, values in parsed.items()})


class FormGuard:
    """The CSRF cookie of a browser and the token its forms carry."""

    def __init__(self, tokens: CsrfTokens) -> None:
        self.tokens = tokens

    def cookie(self, request: Request) -> tuple[str, tuple[str, ...]]:
        """The browser's CSRF cookie value, and the Set-Cookie that gives it one if it has none."""
        existing = request.cookies.get(CSRF_COOKIE)
        if existing and len(existing) <= 64:
            return existing, ()
        fresh = self.tokens.new_cookie()
        return fresh, (cookie(CSRF_COOKIE, fresh),)

    def token(self, request: Request) -> tuple[str, tuple[str, ...]]:
        """The token for this browser's forms, and the Set-Cookie its CSRF cookie needs."""
        value, set_cookie = self.cookie(request)
        return self.tokens.token_for(value), set_cookie

    def new_cookie(self) -> str:
        """A ``Set-Cookie`` with a fresh CSRF cookie (at login: a new id for new forms)."""
        return cookie(CSRF_COOKIE, self.tokens.new_cookie())

    def check(self, request: Request, form: Form) -> None:
        """Return when the form's token belongs to the browser's cookie; else raise
        ``CsrfError`` (403)."""
        self.tokens.verify(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD) or None)


class BrowserViews:
    """What the views of a group of pages start from: the runtime, its browser sessions and
    the CSRF guard of its forms (looked up when first used: the runtime's stores may open
    after the routes are made)."""

    def __init__(self, runtime: ControlPlane) -> None:
        self.runtime = runtime

    @functools.cached_property
    def sessions(self) -> SessionManager:
        sessions = self.runtime.sessions
        if sessions is None:
            raise RuntimeError("the runtime has no session manager")
        return sessions

    @functools.cached_property
    def guard(self) -> FormGuard:
        return FormGuard(CsrfTokens.from_keyring(self.runtime.keyring))

    async def signed_in(self, request: Request) -> ActiveSession | None:
        """The browser's live session and its user, or ``None``."""
        return await self.sessions.resolve(request.cookies.get(SESSION_COOKIE))


def rendering_errors(view: View) -> View:
    """Render a refused CSRF token as a page (403), not as problem+json."""

    @functools.wraps(view)
    async def endpoint(request: Request) -> Response:
        try:
            return await view(request)
        except CsrfError as exc:
            return message_page("Form expired", exc.detail + " Then try again.", exc.status)

    return endpoint


async def stylesheet_view(request: Request) -> Response:
    """The pages' stylesheet (cacheable: it changes only with bastion)."""
    return Response(
        stylesheet(),
        media_type="text/css; charset=utf-8",
        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
    )
