"""A real local identity provider for the gateway tests: discovery, JWKS and introspection.

A small Starlette app served by uvicorn in the test's own event loop, on a free
loopback port. Tests change its keys, take it down, and count its requests.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.crypto import PublicKeySet, SigningKeyPair


class FakeIdP:
    """The IdP's state: its signing keys, an up/down switch, request counters."""

    def __init__(self) -> None:
        self.keys: list[SigningKeyPair] = [SigningKeyPair.generate("ES256")]
        self.down = False
        self.hits: dict[str, int] = {"discovery": 0, "jwks": 0, "introspect": 0}
        self.url = ""
        # token -> introspection answer; anything else is {"active": false}.
        self.answers: dict[str, dict[str, Any]] = {}
        self.basic_seen: list[str] = []
        self.introspect_answer: Callable[[str], Response] | None = None
        # Seconds the introspection endpoint takes to answer (a slow endpoint).
        self.introspect_delay = 0.0

    @property
    def key(self) -> SigningKeyPair:
        return self.keys[0]

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            self.hits["discovery"] += 1
            if self.down:
                return Response(status_code=503)
            return JSONResponse({"issuer": self.url, "jwks_uri": self.url + "/keys"})

        async def jwks(request: Request) -> Response:
            self.hits["jwks"] += 1
            if self.down:
                return Response(status_code=503)
            return JSONResponse(PublicKeySet([k.public_key for k in self.keys]).jwks())

        async def introspect(request: Request) -> Response:
            self.hits["introspect"] += 1
            self.basic_seen.append(request.headers.get("authorization", ""))
            if self.introspect_delay:
                await asyncio.sleep(self.introspect_delay)
            if self.down:
                return Response(status_code=503)
            form = parse_qs((await request.body()).decode("ascii"))
            token = form.get("token", [""])[0]
            if self.introspect_answer is not None:
                return self.introspect_answer(token)
            return JSONResponse(self.answers.get(token, {"active": False}))

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/keys", jwks),
                Route("/introspect", introspect, methods=["POST"]),
            ]
        )


@asynccontextmanager
async def running_idp() -> AsyncIterator[FakeIdP]:
    """Serve a :class:`FakeIdP` on 127.0.0.1 for the duration of the block."""
    idp = FakeIdP()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    idp.url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(idp.app(), log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield idp
    finally:
        server.should_exit = True
        await task
        sock.close()


class IdPThread:
    """A :class:`FakeIdP` served by uvicorn on 127.0.0.1 in a thread of its own (sync tests)."""

    def __init__(self) -> None:
        import threading
        import time

        self.idp = FakeIdP()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.idp.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(self.idp.app(), log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])), daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the IdP did not start"
            time.sleep(0.01)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
