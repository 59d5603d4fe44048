"""The demo's protected browser page (``bastion serve --demo``: ``/app/``, a ``session`` route).

The echo upstream answers requests under its ``html_prefix`` with this page instead of
JSON: who bastion says is signed in (the identity headers it received), the path and
query the browser asked for, and the names of the cookies that reached the app —
bastion's own (``__Host-bastion_*``) never do. Every value is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["render_page"]

_IDENTITY = (
    ("Subject (user id)", "x-bastion-subject"),
    ("Email", "x-bastion-email"),
    ("Roles", "x-bastion-roles"),
    ("Request id", "x-bastion-request-id"),
)


def _header(headers: Sequence[tuple[str, str]], name: str) -> str:
    return ", ".join(value for key, value in headers if key == name)


def render_page(path: str, query: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """The page for a request to ``path``?``query`` with ``headers`` (names lower-case)."""
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th>'
        f'<td data-header="{escape(name)}">{escape(_header(headers, name)) or "—"}</td></tr>'
        for label, name in _IDENTITY
    )
    cookie_names = sorted(
        {
            pair.split("=", 1)[0].strip()
            for key, value in headers
            if key == "cookie"
            for pair in value.split(";")
            if pair.strip()
        }
    )
    cookies = ", ".join(escape(name) for name in cookie_names) or "none"
    target = path + (f"?{query}" if query else "")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>bastion demo app</title></head><body>\n"
        "<h1>bastion demo app</h1>\n"
        "<p>This page is served by the demo upstream behind a <code>session</code> route: "
        "bastion let the request through because your browser is signed in, and told the "
        "app who you are in these headers.</p>\n"
        f'<table id="identity">{rows}</table>\n'
        f'<p>You asked for <code id="target">{escape(target)}</code>.</p>\n'
        f'<p>Cookies the app received: <span id="cookies">{cookies}</span>.</p>\n'
        '<p><a href="/logout">Sign out</a> · <a href="/account">Your account</a></p>\n'
        "</body></html>\n"
    ).encode()
