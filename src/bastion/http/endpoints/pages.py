"""What every server-rendered page of bastion shares: headers, redirects, forms, CSRF.

Every page is ``Cache-Control: no-store`` with a strict CSP (no script at all, styles
only from bastion, forms only to bastion, never framed), ``Referrer-Policy:
no-referrer`` and ``nosniff``; a redirect after a POST is a 303. The login
(:mod:`.login`), the account page (:mod:`.account`) and the authorization endpoint with
its consent page (:mod:`.authorize`) are built from these; :class:`BrowserViews` is what
their views start from (the runtime, its sessions, the CSRF tokens of the forms).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlsplit

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
    "Forms",
    "View",
    "content_security_policy",
    "cookie",
    "expired_cookie",
    "form_action_source",
    "message",
    "page",
    "read_form",
    "rendering_csrf_errors",
    "see_other",
    "stylesheet_view",
]

#: The pages' policy: no script, no plugin, nothing from elsewhere, posted only to bastion.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
#: A CSP host-source, as bastion writes one: scheme, host (name, IPv4 or [IPv6]), port.
_HOST_SOURCE: Final = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
_SCHEME_SOURCE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
#: Where the pages' one stylesheet is served.
STYLESHEET_PATH: Final = "/login/static/bastion.css"
_MAX_FORM: Final = 16 * 1024
#: A view of the pages: a request in, a response out.
View = Callable[[Request], Awaitable[Response]]  # a username, a password (≤ 4096) and two tokens
_COOKIE_ATTRIBUTES: Final = "Path=/; Secure; HttpOnly; SameSite=Lax"


def form_action_source(redirect_uri: str) -> str | None:
    """The CSP source that lets a form of bastion's end in a redirect to ``redirect_uri``
    (a validated, registered one): its origin, or its scheme for a private-use scheme.

    Browsers check ``form-action`` on every redirect that follows a form submission, so
    the login and consent pages of an authorization request must name the client's
    redirect URI, or the browser stops at the last hop. ``None`` when the URI cannot be
    written as a source (nothing is added; the browser then stops).
    """
    parts = urlsplit(redirect_uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        source = f"{scheme}://{parts.netloc}"
        return source if _HOST_SOURCE.fullmatch(source) else None
    return f"{scheme}:" if _SCHEME_SOURCE.fullmatch(f"{scheme}:") else None


def content_security_policy(form_targets: tuple[str, ...] = ()) -> str:
    """The pages' policy, with ``form_targets`` (CSP sources) beside ``'self'`` in
    ``form-action``."""
    if not form_targets:
        return CONTENT_SECURITY_POLICY
    extra = " ".join(form_targets)
    return CONTENT_SECURITY_POLICY.replace("form-action 'self'", f"form-action 'self' {extra}")


@dataclass
class Form:
    """What a browser posted: the fields it sent (the last of repeated ones: none repeat)."""

    fields: dict[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def cookie(name: str, value: str) -> str:
    """A ``Set-Cookie`` value with the ``__Host-`` attributes."""
    return f"{name}={value}; {_COOKIE_ATTRIBUTES}"


def expired_cookie(name: str) -> str:
    """A ``Set-Cookie`` value that removes ``name``."""
    return f"{name}=; Max-Age=0; {_COOKIE_ATTRIBUTES}"


def page(
    body: str,
    status: int = 200,
    *,
    cookies: tuple[str, ...] = (),
    form_targets: tuple[str, ...] = (),
    **headers: str,
) -> Response:
    """An HTML page with the pages' headers (``headers``: ``retry_after`` → ``retry-after``;
    ``form_targets``: CSP sources its forms may end up at, see :func:`form_action_source`)."""
    response = Response(body, status_code=status, media_type="text/html; charset=utf-8")
    response.headers["cache-control"] = "no-store"
    response.headers["content-security-policy"] = content_security_policy(form_targets)
    response.headers["referrer-policy"] = "no-referrer"
    response.headers["x-content-type-options"] = "nosniff"
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    for set_cookie in cookies:
        response.headers.append("set-cookie", set_cookie)
    return response


def see_other(location: str, *, cookies: tuple[str, ...] = ()) -> Response:
    """A 303 to ``location`` with the pages' headers."""
    response = page("", 303, cookies=cookies, location=location)
    del response.headers["content-type"]
    return response


def message(
    title: str,
    text: str,
    status: int,
    *,
    retry_after: int | None = None,
    link: str | None = "/login",
    link_text: str = "Sign in",
) -> Response:
    """A page with one message (an error or a notice)."""
    html = render("message.html", title=title, message=text, link=link, link_text=link_text)
    if retry_after is None:
        return page(html, status)
    return page(html, status, retry_after=str(retry_after))


async def read_form(request: Request) -> Form:
    """The posted form (at most 16 KiB, else 413); unreadable: an empty form (the CSRF
    check then fails)."""
    body = await read_bounded(request, _MAX_FORM, PayloadTooLargeError)
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except ValueError:  # not UTF-8, or more fields than any form of ours: the CSRF check fails
        return Form({})
    return Form({name: values[-1] for name, values in parsed.items()})


class Forms:
    """The CSRF cookie and tokens of the pages' forms, under one key."""

    def __init__(self, csrf: CsrfTokens) -> None:
        self.csrf = csrf

    def csrf_cookie(self, request: Request) -> tuple[str, tuple[str, ...]]:
        """The browser's CSRF cookie value, and the Set-Cookie that gives it one if it has none."""
        existing = request.cookies.get(CSRF_COOKIE)
        if existing and len(existing) <= 64:
            return existing, ()
        fresh = self.csrf.new_cookie()
        return fresh, (cookie(CSRF_COOKIE, fresh),)

    def token(self, request: Request) -> tuple[str, tuple[str, ...]]:
        """The token for this browser's forms, and the Set-Cookie its CSRF cookie needs."""
        value, set_cookie = self.csrf_cookie(request)
        return self.csrf.token_for(value), set_cookie

    def new_cookie(self) -> str:
        """A ``Set-Cookie`` with a fresh CSRF cookie (at login: a new id for the new pages)."""
        return cookie(CSRF_COOKIE, self.csrf.new_cookie())

    def check(self, request: Request, form: Form) -> None:
        """Return when the form's token belongs to the browser's cookie; raises ``CsrfError``."""
        self.csrf.verify(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD) or None)


class BrowserViews:
    """What the views of a group of pages start from: the runtime, its browser sessions and
    the CSRF tokens of their forms (looked up when first used: the runtime's stores may
    open after the routes are made)."""

    def __init__(self, runtime: ControlPlane) -> None:
        self.runtime = runtime

    @functools.cached_property
    def sessions(self) -> SessionManager:
        sessions = self.runtime.sessions
        if sessions is None:
            raise RuntimeError("the runtime has no session manager")
        return sessions

    @functools.cached_property
    def csrf(self) -> CsrfTokens:
        return CsrfTokens.from_keyring(self.runtime.keyring)

    @functools.cached_property
    def forms(self) -> Forms:
        return Forms(self.csrf)

    async def signed_in(self, request: Request) -> ActiveSession | None:
        """The browser's live session and its user, or ``None``."""
        return await self.sessions.resolve(request.cookies.get(SESSION_COOKIE))


def rendering_csrf_errors(view: View) -> View:
    """Render a refused CSRF token as a page (403), not as problem+json."""

    @functools.wraps(view)
    async def endpoint(request: Request) -> Response:
        try:
            return await view(request)
        except CsrfError as exc:
            return message("Form expired", exc.detail + " Then try again.", exc.status)

    return endpoint


async def stylesheet_view(request: Request) -> Response:
    """The pages' stylesheet (cacheable: it changes only with bastion)."""
    return Response(
        stylesheet(),
        media_type="text/css; charset=utf-8",
        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
    )
