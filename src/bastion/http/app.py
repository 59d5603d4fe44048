"""The ASGI app: bastion's middleware stack; the split between its own endpoints and the gateway.

Request flow (outermost first)::

    RequestIdMiddleware → SecurityHeadersMiddleware → ErrorMiddleware → dispatch
    (http requests: the same three in one layer, HttpMiddleware, with one send wrapper)
        dispatch: path under a RESERVED_PREFIXES entry → Starlette router (bastion's endpoints)
                  anything else                          → 503 gateway_unavailable

Gateway paths are the native core's (``native/src/gateway.rs``): one reaches this app
only while the native core has no route table yet, or through a deferral it should not
have made; it is answered 503 ``gateway_unavailable`` with ``Retry-After: 1``, never
judged or forwarded here.

As an ``http`` or ``websocket`` request enters, its client address is resolved
once (:func:`bastion.gateway.forwarded.remember_client_ip`, ``trusted_proxies``
honoured); endpoints read it with :func:`~bastion.gateway.forwarded.request_client_ip`.

Only ``http`` and ``websocket`` scopes are served; ``lifespan`` calls the
runtime's optional ``startup()`` / ``shutdown()``; any other scope type is
refused with :class:`~bastion.http.errors.UnsupportedScopeError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Router

from bastion.errors import BastionError
from bastion.gateway.forwarded import TrustedProxies, remember_client_ip
from bastion.gateway.paths import normalize_path, resolve_dot_segments
from bastion.gateway.reserved import RESERVED_PREFIXES, is_reserved, reserved_exact
from bastion.http.errors import (
    EndpointMethodNotAllowedError,
    EndpointNotFoundError,
    GatewayUnavailableError,
    HTTPError,
    UnsupportedScopeError,
)
from bastion.http.health import Probed, health_routes
from bastion.http.middleware import ErrorMiddleware, RequestIdMiddleware, SecurityHeadersMiddleware
from bastion.http.middleware.combined import HttpMiddleware
from bastion.http.types import ASGIApp, Receive, Scope, Send
from bastion.settings import Settings

__all__ = [
    "RESERVED_PREFIXES",
    "BastionApp",
    "HasLifespan",
    "RuntimeLike",
    "create_app",
    "is_reserved",
]

log = logging.getLogger("bastion.http")


class RuntimeLike(Probed, Protocol):
    """What :func:`create_app` needs from the runtime (``bastion.runtime.Runtime`` fits).

    A runtime that is also :class:`HasLifespan` has ``startup()`` / ``shutdown()``
    called from the ASGI lifespan.
    """

    # Read-only properties: a dataclass field of a subtype satisfies them (plain
    # protocol attributes would be invariant).
    @property
    def settings(self) -> Settings: ...
    @property
    def node_id(self) -> str: ...


@runtime_checkable
class HasLifespan(Protocol):
    """A runtime that starts and stops with the ASGI lifespan (``bastion.runtime.Runtime``)."""

    async def startup(self) -> None: ...
    async def shutdown(self) -> None: ...


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    raise EndpointNotFoundError(f"no bastion endpoint at {scope.get('path', '')!r}")


_STARLETTE_CODES = {400: "bad_request", 413: "payload_too_large", 415: "unsupported_media_type"}


def _from_starlette(exc: HTTPException) -> BastionError:
    if exc.status_code == 404:
        return EndpointNotFoundError()
    if exc.status_code == 405:
        # Starlette keeps methods in a set: sort them so the header is stable.
        methods = (exc.headers or {}).get("Allow", "").split(",")
        allow = ", ".join(sorted(m.strip() for m in methods if m.strip()))
        return EndpointMethodNotAllowedError(f"allowed methods: {allow}", allow=allow)
    error = HTTPError(str(exc.detail))
    error.status = exc.status_code
    error.code = _STARLETTE_CODES.get(exc.status_code, "http_error")
    error.title = error.code.replace("_", " ").capitalize()
    return error


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, BastionError):
        return exc.detail.splitlines()[0] if exc.detail else exc.code
    return f"unexpected {type(exc).__name__} (see the log)"


class BastionApp:
    """bastion's ASGI application; build it with :func:`create_app`."""

    def __init__(
        self, runtime: RuntimeLike, routes: Sequence[BaseRoute] = (), *, gateway: bool = True
    ) -> None:
        self.runtime = runtime
        # Built once: every request's client address is resolved against it, once.
        self._trusted = TrustedProxies(runtime.settings.trusted_proxies)
        # Whether gateway paths reach this app at all (the public port: only when the
        # native core hands one over; a listener of bastion's own endpoints: never).
        self._serves_gateway = gateway
        self.router = Router(
            routes=[*health_routes(runtime), *routes], redirect_slashes=False, default=_not_found
        )
        ids = RequestIdMiddleware(SecurityHeadersMiddleware(ErrorMiddleware(self._dispatch)))
        # WebSockets go through the stack; http through the same work in one layer.
        self._stack: ASGIApp = ids
        self._http: ASGIApp = HttpMiddleware(
            self._dispatch,
            request_ids=ids,
            security=SecurityHeadersMiddleware(self._dispatch),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            remember_client_ip(scope, self._trusted)
            await self._http(scope, receive, send)
        elif kind == "websocket":
            remember_client_ip(scope, self._trusted)
            await self._stack(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            raise UnsupportedScopeError(f"ASGI scope type {kind!r} is not served by bastion")

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        raw_path = scope.get("raw_path")
        if raw_path and b"%" in raw_path:
            # Decide on the gateway's one normalisation, never on the server's decoding:
            # it refuses an encoded "/" or NUL (400) instead of letting "/x%2F..%2Foauth2"
            # reach bastion's own endpoints, and the same spelling reaches the same place.
            path = normalize_path(raw_path.split(b"?", 1)[0])
            if reserved_exact(path):
                await self._owned({**scope, "path": path}, receive, send)
            else:
                await self._gateway(scope, receive, send)
            return
        if reserved_exact(path):
            await self._owned(scope, receive, send)
        elif ("//" in path or "/." in path) and reserved_exact(resolve_dot_segments(path)):
            await self._owned({**scope, "path": resolve_dot_segments(path)}, receive, send)
        else:
            await self._gateway(scope, receive, send)

    async def _gateway(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._serves_gateway:
            raise EndpointNotFoundError(f"no bastion endpoint at {scope.get('path', '')!r}")
        raise GatewayUnavailableError(
            "The gateway is not serving this request yet; retry in a moment."
        )

    async def _owned(self, scope: Scope, receive: Receive, send: Send) -> None:
        # With "app" in the scope, Starlette raises HTTPException instead of
        # answering 404/405 in text/plain; we render those as problem+json.
        scope["app"] = self
        try:
            await self.router(scope, receive, send)
        except HTTPException as exc:
            raise _from_starlette(exc) from None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not await self._call_hook("startup", send):
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if await self._call_hook("shutdown", send):
                    await send({"type": "lifespan.shutdown.complete"})
                return

    async def _call_hook(self, name: str, send: Send) -> bool:
        runtime = self.runtime
        if not isinstance(runtime, HasLifespan):
            return True
        hook: Callable[[], Awaitable[None]] = (
            runtime.startup if name == "startup" else runtime.shutdown
        )
        try:
            await hook()
        except Exception as exc:
            log.error("runtime %s failed: %s", name, _one_line(exc), exc_info=exc)
            await send({"type": f"lifespan.{name}.failed", "message": _one_line(exc)})
            return False
        return True


def create_app(
    runtime: RuntimeLike, *, routes: Sequence[BaseRoute] = (), gateway: bool = True
) -> BastionApp:
    """Assemble bastion's ASGI app for ``runtime``.

    ``routes`` adds Starlette routes for bastion's own endpoints; their paths
    must lie under :data:`RESERVED_PREFIXES`, else they could never be reached.
    ``gateway=False``: a listener with no gateway behind it (the admin listener):
    every other path is 404 problem+json, not the gateway's 503.

    Raises:
        ValueError: a route's path is not under a reserved prefix.
    """
    for route in routes:
        path = getattr(route, "path", None)
        if path is not None and not is_reserved(path):
            raise ValueError(f"route {path!r} is outside bastion's reserved prefixes")
    return BastionApp(runtime, routes, gateway=gateway)
