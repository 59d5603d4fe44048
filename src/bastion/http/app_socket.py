"""The HTTP protocol of the private app socket: one write per response where it can.

The native front reaches the ASGI app over a private Unix socket served by uvicorn
(:mod:`bastion.http.server`). uvicorn writes a response's head when the app sends
``http.response.start`` and its body when the app sends ``http.response.body``: two
``write`` calls, two system calls with the GIL held, and two wake-ups of the front for
one small answer (a token response, a health check). Measured on the token endpoint
(``bench/oauth``, one core): about a tenth of the request's cost, which made the
token endpoint ~10 % slower than it was before the native front (granian served the
app then, and wrote once).

:class:`CoalescingHttpToolsProtocol` is uvicorn's own httptools protocol with its
transport wrapped: what is written during one turn of the event loop goes out in one
write at the end of that turn (``loop.call_soon``). Nothing else changes: the order of
bytes is kept, ``close`` writes what is pending first, and a write that brings the
pending bytes to :data:`FLUSH_AT` or more goes out at once, so a streamed body that never
yields to the loop is not held in memory and uvicorn's flow control (the real
transport's ``pause_writing``) still applies.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["FLUSH_AT", "CoalescingHttpToolsProtocol", "CoalescingTransport"]

#: Pending bytes that are written at once rather than at the end of the loop's turn.
FLUSH_AT = 64 * 1024


class CoalescingTransport:
    """A transport whose writes within one turn of the loop become one write."""

    __slots__ = ("_armed", "_loop", "_pending", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0
        self._armed = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()
        elif not self._armed:
            self._armed = True
            self._loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        self._armed = False
        self.flush()

    def flush(self) -> None:
        """Write what is pending now (in one write)."""
        if not self._pending:
            return
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._pending = []
        self._size = 0
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # Everything else (is_closing, get_extra_info, pause_reading, abort, …) is the
        # real transport's.
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through a :class:`CoalescingTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self.transport = CoalescingTransport(self.transport, self.loop)  # type: ignore[assignment]
