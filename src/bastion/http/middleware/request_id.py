"""Request ids: accept a well-formed incoming ``X-Request-Id`` or mint one, and echo it back.

An incoming id is kept only if it matches ``[A-Za-z0-9._:-]{1,64}`` in full —
anything else (too long, spaces, CR/LF, non-ASCII) is replaced, so an id can
be logged, put in a problem document and forwarded upstream without escaping.

Minted ids are ``<process prefix>-<counter in hex>``: the prefix is 12 random
hex digits chosen at start-up, so ids are unique across nodes and restarts and
cost one integer increment per request. They are correlation ids, not secrets.
"""

from __future__ import annotations

import itertools
import re
import secrets

from bastion.http.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "SCOPE_KEY",
    "RequestIdMiddleware",
    "add_request_id",
    "get_request_id",
]

REQUEST_ID_HEADER = b"x-request-id"
SCOPE_KEY = "bastion.request_id"

_VALID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


def get_request_id(scope: Scope) -> str:
    """The request id the middleware assigned to ``scope`` ("-" outside the middleware)."""
    rid: str = scope.get(SCOPE_KEY, "-")
    return rid


class RequestIdMiddleware:
    """Assign each http/websocket request an id and add ``X-Request-Id`` to its response.

    The id is stored in ``scope["bastion.request_id"]`` and in
    ``scope["state"]["request_id"]`` (Starlette's ``request.state.request_id``).
    A response that already carries ``X-Request-Id`` keeps it.
    """

    __slots__ = ("_app", "_counter", "_prefix")

    def __init__(self, app: ASGIApp, *, prefix: str | None = None) -> None:
        self._app = app
        self._prefix = (prefix or secrets.token_hex(6)) + "-"
        self._counter = itertools.count(1)

    def new_id(self) -> str:
        """Mint a fresh request id."""
        return f"{self._prefix}{next(self._counter):x}"

    def assign(self, scope: Scope) -> str:
        """Give ``scope`` its request id (the client's when well formed, else a new one)."""
        rid: str | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                if _VALID.fullmatch(value):
                    rid = value.decode("ascii")
                break
        if rid is None:
            rid = self.new_id()
        scope[SCOPE_KEY] = rid
        state = scope.get("state")
        if state is None:
            scope["state"] = {"request_id": rid}
        else:
            state["request_id"] = rid
        return rid

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        header = (REQUEST_ID_HEADER, self.assign(scope).encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                add_request_id(headers, header)
                # A new dict: the app may reuse one constant start message for every response.
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_id)


def add_request_id(headers: list[tuple[bytes, bytes]], header: tuple[bytes, bytes]) -> None:
    """Append ``header`` (``X-Request-Id``) to ``headers`` unless they carry one already."""
    for name, _ in headers:
        if len(name) == 12 and name.lower() == REQUEST_ID_HEADER:
            return
    headers.append(header)
