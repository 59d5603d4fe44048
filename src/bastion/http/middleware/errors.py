"""Turn every exception escaping the app into a problem+json response — never a stack trace.

- ``BastionError`` → its own status and ``reason`` code (``ServiceUnavailableError``
  adds ``Retry-After: 1``; see :mod:`bastion.http.problem`).
- starlette's ``ClientDisconnect`` while an endpoint reads the body → 400
  ``bad_request_body`` with a debug-level log only: the server reports
  ``http.disconnect`` both when the client went away and when it could not
  parse the body (a malformed chunked body) — neither is a bug;
- any other exception → 500 ``internal_error`` carrying only the request id;
  the traceback goes to the ``bastion.http`` logger, never into the body.
- if the response had already started, nothing can be rendered: the error is
  logged and the app returns, which makes the server close the connection so
  the client sees a truncated response instead of a wrong one.
"""

from __future__ import annotations

import contextlib
import logging

from starlette.requests import ClientDisconnect

from bastion.errors import BastionError, ServiceUnavailableError
from bastion.http.errors import RequestBodyUnreadableError
from bastion.http.middleware.request_id import get_request_id
from bastion.http.problem import problem_response, send_problem
from bastion.http.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ErrorMiddleware", "render_http_error"]

log = logging.getLogger("bastion.http")

# RFC 6455 close codes for a websocket refused by a deliberate error vs. a bug.
_WS_POLICY_VIOLATION = 1008
_WS_INTERNAL_ERROR = 1011
_WS_DENIAL = "websocket.http.response"


class ErrorMiddleware:
    """Render exceptions from the wrapped app as RFC 9457 problem responses."""

    __slots__ = ("_app",)

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
            return
        if kind != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception as exc:
            await render_http_error(scope, send, exc, started=started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        accepted = False

        async def tracking_send(message: Message) -> None:
            nonlocal accepted
            if message["type"] in ("websocket.accept", "websocket.http.response.start"):
                accepted = True
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except BastionError as error:
            if not accepted and _WS_DENIAL in (scope.get("extensions") or {}):
                # The ASGI "websocket.http.response" extension: refuse the handshake with a
                # real HTTP status (401 with WWW-Authenticate, 403 …) and a problem document.
                with contextlib.suppress(Exception):
                    status, headers, body = problem_response(error, get_request_id(scope))
                    await send(
                        {
                            "type": "websocket.http.response.start",
                            "status": status,
                            "headers": headers,
                        }
                    )
                    await send({"type": "websocket.http.response.body", "body": body})
                return
            code = _WS_INTERNAL_ERROR if error.status >= 500 else _WS_POLICY_VIOLATION
            await _close_websocket(send, code, error.code)
        except Exception as exc:
            log.error(
                "websocket %s failed with an unexpected %s",
                get_request_id(scope),
                type(exc).__name__,
                exc_info=exc,
            )
            await _close_websocket(send, _WS_INTERNAL_ERROR, "internal_error")


async def render_http_error(scope: Scope, send: Send, exc: Exception, *, started: bool) -> None:
    """Answer ``exc`` escaping the app as a problem response (nothing if ``started``).

    A ``BastionError`` renders its own status and code; anything else is a 500
    ``internal_error`` logged with its traceback. After the response started
    nothing can be rendered: the error is logged and the connection will close.
    """
    if started:
        _log_after_start(scope, exc)
        return
    if isinstance(exc, BastionError):
        # log_traceback False: an expected failure its raiser already logged in one line.
        if exc.status >= 500 and exc.log_traceback and not isinstance(exc, ServiceUnavailableError):
            log.error(
                "request %s failed: %s (%s)",
                get_request_id(scope),
                exc.code,
                exc.detail,
                exc_info=exc,
            )
        await send_problem(send, exc, get_request_id(scope))
        return
    if isinstance(exc, ClientDisconnect):
        log.debug("request %s: the request body could not be read", get_request_id(scope))
        error = RequestBodyUnreadableError(
            "The request body could not be read to its end (malformed chunked encoding, "
            "or the connection closed early)."
        )
        # The client may be gone: then there is nobody to answer, and that is fine.
        with contextlib.suppress(Exception):
            await send_problem(send, error, get_request_id(scope))
        return
    log.error(
        "request %s failed with an unexpected %s",
        get_request_id(scope),
        type(exc).__name__,
        exc_info=exc,
    )
    await send_problem(send, BastionError(), get_request_id(scope))


async def _close_websocket(send: Send, code: int, reason: str) -> None:
    # The connection may already be gone; there is nothing left to tell the client then.
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code, "reason": reason})


def _log_after_start(scope: Scope, exc: BaseException) -> None:
    if isinstance(exc, BastionError) and not exc.log_traceback:
        return  # its raiser logged it (an upstream failing mid-response)
    log.error(
        "request %s failed after the response started (%s); closing the connection",
        get_request_id(scope),
        type(exc).__name__,
        exc_info=exc,
    )
