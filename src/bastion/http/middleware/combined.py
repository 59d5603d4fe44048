"""The three middlewares' work for an ``http`` request in one layer, with one ``send`` wrapper.

Request id, security headers and error rendering behave exactly as
:class:`~bastion.http.middleware.RequestIdMiddleware`,
:class:`~bastion.http.middleware.SecurityHeadersMiddleware` and
:class:`~bastion.http.middleware.ErrorMiddleware` stacked in that order (they
share the code below), but a response passes through one closure instead of
three. Every proxied request pays for each wrapper on each ``send``: measured
in ``bench/gateway``, the stacked wrappers were the largest single cost of the
gateway's own Python code. WebSocket scopes still go through the stack.
"""

from __future__ import annotations

from bastion.http.middleware.errors import render_http_error
from bastion.http.middleware.request_id import (
    REQUEST_ID_HEADER,
    RequestIdMiddleware,
    add_request_id,
)
from bastion.http.middleware.security_headers import SecurityHeadersMiddleware, add_security_headers
from bastion.http.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HttpMiddleware"]


class HttpMiddleware:
    """Request id → security headers → errors for ``http`` scopes (see the module docstring).

    ``request_ids`` and ``security`` are the stacked middlewares whose settings
    (id prefix and counter, ``Server`` header) this layer uses.
    """

    __slots__ = ("_app", "_ids", "_security")

    def __init__(
        self, app: ASGIApp, *, request_ids: RequestIdMiddleware, security: SecurityHeadersMiddleware
    ) -> None:
        self._app = app
        self._ids = request_ids
        self._security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = (REQUEST_ID_HEADER, self._ids.assign(scope).encode("ascii"))
        always = self._security.always_for(scope)
        started = False

        async def send_decorated(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                add_security_headers(headers, always)
                add_request_id(headers, header)
                # A new dict: the app may reuse one constant start message for every response.
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self._app(scope, receive, send_decorated)
        except Exception as exc:
            await render_http_error(scope, send_decorated, exc, started=started)
