"""A hello-world raw ASGI app (with lifespan support), the server benchmark's workload."""

from __future__ import annotations

from typing import Any

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_BODY = {"type": "http.response.body", "body": b"Hello, world!"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every request with 200 "Hello, world!"; complete the lifespan handshake."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send(_START)
    await send(_BODY)
