"""Security headers on every response bastion sends (its own endpoints and proxied ones).

- ``Strict-Transport-Security: max-age=63072000; includeSubDomains`` — only on
  https (RFC 6797 section 7.2: HSTS sent over plain HTTP is ignored and misleading).
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` always.
- For ``text/html`` responses a strict ``Content-Security-Policy`` (no inline
  script or style, no third-party assets, no framing) and ``X-Frame-Options: DENY``
  for browsers that predate ``frame-ancestors``.

A header the app (or upstream) set explicitly is never overridden: a page that
needs a different CSP sets its own.
"""

from __future__ import annotations

from bastion.http.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "HSTS",
    "SecurityHeadersMiddleware",
    "add_security_headers",
]

HSTS = b"max-age=63072000; includeSubDomains"
CONTENT_SECURITY_POLICY = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

_ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
_HTTPS_ONLY: tuple[tuple[bytes, bytes], ...] = ((b"strict-transport-security", HSTS),)
_HTML_ONLY: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY),
    (b"x-frame-options", b"DENY"),
)
_SECURE_SCHEMES = frozenset({"https", "wss"})
_OUR_NAMES = frozenset(name for name, _ in (*_ALWAYS, *_HTTPS_ONLY, *_HTML_ONLY, (b"server", b"")))
_OUR_LENGTHS = frozenset(len(name) for name in (*_OUR_NAMES, b"content-type"))


class SecurityHeadersMiddleware:
    """Add bastion's security headers to every ``http.response.start``.

    ``server_header``, when given, is sent as ``Server`` unless the app set one:
    for a server that adds its own ``Server`` header, where an app-provided value
    replaces the server's name and version (bastion's own front adds none).
    """

    __slots__ = ("_always_http", "_always_https", "_app")

    def __init__(self, app: ASGIApp, *, server_header: bytes | None = None) -> None:
        self._app = app
        extra = ((b"server", server_header),) if server_header else ()
        self._always_http: tuple[tuple[bytes, bytes], ...] = _ALWAYS + extra
        self._always_https = _ALWAYS + _HTTPS_ONLY + extra

    def always_for(self, scope: Scope) -> tuple[tuple[bytes, bytes], ...]:
        """The headers every response to ``scope`` gets (HSTS only over https / wss)."""
        return self._always_https if scope.get("scheme") in _SECURE_SCHEMES else self._always_http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        always = self.always_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                add_security_headers(headers, always)
                # A new dict: the app may reuse one constant start message for every response.
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_headers)


def add_security_headers(
    headers: list[tuple[bytes, bytes]], always: tuple[tuple[bytes, bytes], ...]
) -> None:
    """Append ``always`` (and, for HTML, the CSP) to ``headers``, except names already set."""
    present: set[bytes] | None = None
    html = False
    for name, value in headers:
        # Cheap length filter first: most headers are none of ours.
        if len(name) not in _OUR_LENGTHS:
            continue
        name = name.lower()
        if name in _OUR_NAMES:
            if present is None:
                present = set()
            present.add(name)
        elif name == b"content-type" and value[:9].lower() == b"text/html":
            html = True
    if present is None:
        headers.extend(always)
        if html:
            headers.extend(_HTML_ONLY)
    else:
        headers.extend(h for h in always if h[0] not in present)
        if html:
            headers.extend(h for h in _HTML_ONLY if h[0] not in present)
