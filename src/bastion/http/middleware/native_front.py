"""What the native front knows about a connection, put back into the ASGI scope.

Under ``server.engine: native`` the public port is served by the Rust front
(``native/src/server.rs``); every request it defers reaches this app over a
private Unix socket, where uvicorn sees no TCP peer and no TLS. The front adds
(after removing every client-sent ``x-bastion-front-*`` header):

- ``x-bastion-front-peer``: ``ip:port`` of the TCP peer -> ``scope["client"]``;
- ``x-bastion-front-scheme``: ``https`` / ``http`` -> ``scope["scheme"]``
  (``wss`` / ``ws`` for WebSockets);
- ``x-bastion-front-method``: the request's real method when it is not one of
  GET HEAD POST PUT DELETE OPTIONS PATCH (the front then sends ``GET``: uvicorn's
  parser refuses methods outside its list, ``delete`` among them, in plain text)
  -> ``scope["method"]``, which bastion then judges as any engine's;
- ``x-bastion-front-tls-version``: ``0x0303`` / ``0x0304`` and
  ``x-bastion-front-client-cert``: the verified leaf certificate, PEM,
  URL-encoded -> ``scope["extensions"]["tls"]``, the ASGI TLS extension
  (https://asgi.readthedocs.io/en/latest/specs/tls.html).

This middleware moves them into the scope and removes them from the headers,
so nothing downstream (nor an upstream) ever sees them. They are trusted only
because the socket is private (a 0700 directory of this process): install this
middleware on that socket's server only, never on a public listener.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from bastion.http.types import ASGIApp, Receive, Scope, Send

__all__ = ["FRONT_HEADER_PREFIX", "NativeFrontMiddleware"]

FRONT_HEADER_PREFIX = b"x-bastion-front-"

_PEER = b"x-bastion-front-peer"
_SCHEME = b"x-bastion-front-scheme"
_TLS_VERSION = b"x-bastion-front-tls-version"
_CLIENT_CERT = b"x-bastion-front-client-cert"
_METHOD = b"x-bastion-front-method"


def _peer(value: bytes) -> tuple[str, int] | None:
    text = value.decode("latin-1")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _tls_version(value: bytes) -> int | None:
    try:
        return int(value.decode("latin-1"), 16)
    except ValueError:
        return None


class NativeFrontMiddleware:
    """Pure ASGI: the front's ``x-bastion-front-*`` headers become scope entries."""

    def __init__(self, app: ASGIApp, *, server: tuple[str, int] | None = None) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.adopt(scope)
        await self.app(scope, receive, send)

    def adopt(self, scope: Scope) -> None:
        """Move the front's headers of ``scope`` into ``client``, ``scheme`` and ``extensions``."""
        front: dict[bytes, bytes] = {}
        kept: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            if name.startswith(FRONT_HEADER_PREFIX):
                front[name] = value
            else:
                kept.append((name, value))
        scope["headers"] = kept
        method = front.get(_METHOD)
        if method is not None and scope["type"] == "http":
            scope["method"] = method.decode("latin-1")
        peer = _peer(front.get(_PEER, b""))
        scope["client"] = peer
        if self.server is not None:
            scope["server"] = self.server
        secure = front.get(_SCHEME) == b"https"
        if scope["type"] == "websocket":
            scope["scheme"] = "wss" if secure else "ws"
        else:
            scope["scheme"] = "https" if secure else "http"
        extensions: dict[str, Any] = dict(scope.get("extensions") or {})
        extensions.pop("tls", None)
        if secure:
            cert = front.get(_CLIENT_CERT)
            extensions["tls"] = {
                "server_cert": None,
                "client_cert_chain": [unquote(cert.decode("latin-1"))] if cert else [],
                "client_cert_name": None,
                "client_cert_error": None,
                "tls_version": _tls_version(front.get(_TLS_VERSION, b"")),
                "cipher_suite": None,
            }
        scope["extensions"] = extensions
