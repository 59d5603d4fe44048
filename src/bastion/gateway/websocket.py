"""WebSocket pass-through (RFC 6455): the gateway's ``proxy`` step for ASGI ``websocket`` scopes.

The upgrade request runs the same steps as any request — match, authenticate,
authorize, limit, mutate — with method GET, and only a route with
``websocket.enabled`` takes it (:class:`WebSocketNotAllowedError` otherwise).
A denial happens *before* the client's handshake is accepted: the HTTP layer
answers it as a problem+json HTTP response when the server offers the ASGI
``websocket.http.response`` extension, else it closes with 1008; the upstream
never sees an unauthenticated connection.

Then :func:`websocket_proxy` opens the upstream WebSocket (the ``websockets``
client: verified TLS like HTTP upstreams, no environment proxies, no
compression — a compressed frame could expand past the size limit), accepts
the client with the subprotocol the upstream chose, and relays messages both
ways until one side closes; the close code goes to the other side. An idle
connection (no message either way for ``idle_timeout``) and one older than
``max_duration`` are closed with 1001; a message larger than
``max_message_size`` closes with 1009.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from bastion.gateway.errors import (
    GatewayError,
    UpstreamTimeoutError,
    UpstreamTLSError,
    UpstreamUnavailableError,
)
from bastion.gateway.proxy import ClientDisconnectedError, prepare_request

if TYPE_CHECKING:
    from bastion.gateway.pipeline import Exchange

__all__ = ["WebSocketNotAllowedError", "websocket_allowed", "websocket_proxy"]

# Handshake headers the websockets client writes itself (or that must not be replayed).
_HANDSHAKE_HEADERS = frozenset(
    {
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
    }
)
_GOING_AWAY = 1001
_TOO_BIG = 1009
_INTERNAL = 1011
# Close codes that exist only locally (RFC 6455 §7.4.1) and cannot be sent on the wire.
_RESERVED = frozenset({1005, 1006, 1015})


class WebSocketNotAllowedError(GatewayError):
    """The matched route does not accept WebSocket upgrades (``websocket.enabled`` is off)."""

    code = "websocket_not_allowed"
    status = 403
    title = "WebSocket not allowed"


def _wire_code(code: int | None) -> int:
    if code is None or code in _RESERVED or not 1000 <= code <= 4999:
        return 1000
    return code


def _upstream_headers(ex: Exchange, trusted: bool) -> tuple[list[tuple[str, str]], list[str]]:
    """The headers to forward (identity headers included) and the requested subprotocols."""
    scope = ex.scope
    strip = ex.credential_headers
    protocols: list[str] = []
    kept: list[tuple[bytes, bytes]] = []
    for name, value in scope.get("headers") or ():
        lowered = name.lower()
        if lowered == b"sec-websocket-protocol":
            protocols.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
        elif lowered not in _HANDSHAKE_HEADERS and lowered not in strip:
            kept.append((lowered, value))
    # X-Forwarded-Proto names the HTTP scheme the upgrade request came over.
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    prepared = prepare_request({**scope, "headers": kept, "scheme": scheme}, trusted=trusted)
    headers: list[tuple[str, str]] = []
    for line in prepared.header_block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b": ")
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
    return headers, protocols


async def _open_upstream(ex: Exchange, url: str, settings: Any) -> ClientConnection:
    """Connect to the upstream WebSocket; raises an ``Upstream…Error`` (nothing accepted yet)."""
    route = ex.route
    assert route is not None
    gateway = ex.gateway
    client = ex.scope.get("client")
    trusted = (
        bool(gateway.trusted_proxies)
        and client is not None
        and (client[0] in gateway.trusted_proxies)
    )
    headers, protocols = _upstream_headers(ex, trusted)
    upstream = route.upstream
    tls = None
    if upstream.scheme == "https":
        tls = upstream.ssl_context or gateway.client.ssl_context
    timeout = route.connect_timeout or gateway.client.connect_timeout
    try:
        return await connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(p) for p in protocols] or None,
            user_agent_header=None,
            proxy=None,
            compression=None,
            ssl=tls,
            server_hostname=upstream.host if tls is not None else None,
            open_timeout=min(timeout, route.timeout),
            ping_interval=None,
            max_size=int(settings.max_message_size),
            close_timeout=5,
        )
    except TimeoutError:
        raise UpstreamTimeoutError("Connecting to the upstream WebSocket timed out.") from None
    except InvalidStatus as exc:
        raise UpstreamUnavailableError(
            f"The upstream refused the WebSocket upgrade (status {exc.response.status_code})."
        ) from None
    except InvalidHandshake:
        raise UpstreamUnavailableError(
            "The upstream's WebSocket handshake response was invalid."
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise UpstreamTLSError(
            "The TLS handshake with the upstream failed: its certificate was not "
            f"accepted ({exc.verify_message})."
        ) from None
    except ssl.SSLError:
        raise UpstreamTLSError("The TLS handshake with the upstream failed.") from None
    except OSError:
        raise UpstreamUnavailableError("The upstream could not be reached.") from None


def websocket_allowed(ex: Exchange) -> Any:
    """The route's websocket settings; raises :class:`WebSocketNotAllowedError` when off."""
    route = ex.route
    assert route is not None
    settings = getattr(route.settings, "websocket", None)
    if settings is None or not settings.enabled:
        raise WebSocketNotAllowedError("This route does not accept WebSocket connections.")
    return settings


async def websocket_proxy(ex: Exchange) -> None:
    """Relay one authorised WebSocket connection to the route's upstream.

    Raises, before the client's handshake was accepted: :class:`WebSocketNotAllowedError`,
    ``UpstreamUnavailableError`` / ``UpstreamTimeoutError`` / ``UpstreamTLSError``;
    :class:`~bastion.gateway.proxy.ClientDisconnectedError` when the client left first.
    """
    settings = websocket_allowed(ex)
    route = ex.route
    assert route is not None
    receive, send = ex.receive, ex.send
    first = await receive()
    if first["type"] != "websocket.connect":
        raise ClientDisconnectedError
    base = "wss" if route.upstream.scheme == "https" else "ws"
    up = route.upstream
    host = f"[{up.host}]" if ":" in up.host else up.host
    target = route.upstream_path(ex.path)
    query = ex.scope.get("query_string")
    url = f"{base}://{host}:{up.port}{target}" + (f"?{query.decode('latin-1')}" if query else "")
    upstream = await _open_upstream(ex, url, settings)
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _relay(ex, upstream, settings)
    finally:
        with contextlib.suppress(Exception):
            await upstream.close()


async def _relay(ex: Exchange, upstream: ClientConnection, settings: Any) -> None:
    receive, send = ex.receive, ex.send
    loop = asyncio.get_running_loop()
    limit = int(settings.max_message_size)
    idle = float(settings.idle_timeout)
    last = loop.time()
    client_open = True

    async def close_client(code: int, reason: str = "") -> None:
        nonlocal client_open
        if client_open:
            client_open = False
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": code, "reason": reason})

    async def client_to_upstream() -> None:
        nonlocal last, client_open
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.disconnect":
                client_open = False
                await upstream.close(_wire_code(message.get("code")))
                return
            if kind != "websocket.receive":
                continue
            data = message.get("bytes")
            if data is None:
                data = message.get("text") or ""
            if len(data) > limit:
                await close_client(_TOO_BIG, "message too big")
                await upstream.close(_GOING_AWAY)
                return
            last = loop.time()
            await upstream.send(data)

    async def upstream_to_client() -> None:
        nonlocal last
        try:
            async for data in upstream:
                last = loop.time()
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        except ConnectionClosed:
            pass
        received = upstream.protocol.close_rcvd
        if received is not None:
            await close_client(_wire_code(received.code), received.reason)
        elif upstream.close_code == _TOO_BIG:
            await close_client(_TOO_BIG, "message too big")
        else:
            await close_client(_INTERNAL if upstream.close_code != 1000 else 1000)

    async def watchdog() -> None:
        while True:
            remaining = last + idle - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)

    tasks = [
        asyncio.ensure_future(client_to_upstream()),
        asyncio.ensure_future(upstream_to_client()),
        asyncio.ensure_future(watchdog()),
    ]
    try:
        async with asyncio.timeout(float(settings.max_duration)):
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[2] in done:
            await close_client(_GOING_AWAY, "idle timeout")
    except TimeoutError:
        await close_client(_GOING_AWAY, "maximum duration reached")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            # A pump ends by the peer going away (ConnectionClosed, a failed send):
            # either way the connection is over and both sides were told.
            with contextlib.suppress(BaseException):
                await task
