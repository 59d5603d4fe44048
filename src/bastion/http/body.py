"""Reading a request body with a bound: the endpoints that read whole bodies use this one loop.

A declared ``Content-Length`` above the bound is refused before anything is
read; a body that streams past the bound (no or a lying ``Content-Length``) is
refused as soon as it does, so no endpoint ever holds more than the bound.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

__all__ = ["read_bounded"]


async def read_bounded(request: Request, limit: int, too_large: Callable[[], Exception]) -> bytes:
    """The body of ``request``, at most ``limit`` bytes; raises ``too_large()`` beyond.

    A ``Content-Length`` that is not a number is left to the caller (and to the
    server, which frames the body).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)
