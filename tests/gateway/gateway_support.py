"""Test helpers for the gateway: unvalidated routes and a hand-built-scope ASGI driver."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bastion.settings import RouteMatch, RouteSettings

#: A route as the gateway reads it: the real settings model (``Route`` in annotations).
Route = RouteSettings


def route(name: str, path: str, upstream: str = "http://127.0.0.1:9", **kw: Any) -> Route:
    """A public route, built without the settings' validation: the gateway's own compile-time
    checks (non-normal paths, empty methods, bad upstreams) must still refuse what it gets."""
    match_kw = {k: kw.pop(k) for k in ("host", "methods") if k in kw}
    match = RouteMatch.model_construct(path=path, **match_kw)
    fields = {"public": True, "timeout": 5.0, **kw}
    return RouteSettings.model_construct(name=name, match=match, upstream=upstream, **fields)


@dataclass
class Result:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    body_messages: int

    def header(self, name: str) -> str | None:
        values = [v.decode("latin-1") for n, v in self.headers if n == name.lower().encode()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        return orjson.loads(self.body)


class Recorder:
    """An ASGI ``send`` that records messages, optionally slow (to exercise back-pressure)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[dict[str, Any]] = []
        self.delay = delay

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)

    def result(self) -> Result:
        start = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(start) == 1, self.messages
        bodies = [m for m in self.messages if m["type"] == "http.response.body"]
        assert bodies and bodies[-1].get("more_body", False) is False, "response not finished"
        return Result(
            status=start[0]["status"],
            headers=list(start[0]["headers"]),
            body=b"".join(m.get("body", b"") for m in bodies),
            body_messages=len(bodies),
        )


def make_scope(
    method: str = "GET",
    path: str = "/",
    *,
    raw_path: bytes | None = None,
    query: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    host: str | None = "gw.test",
    client: tuple[str, int] | None = ("203.0.113.7", 40000),
    scheme: str = "http",
) -> dict[str, Any]:
    raw_headers = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    if host is not None:
        raw_headers.insert(0, (b"host", host.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "headers": raw_headers,
        "client": client,
        "server": ("127.0.0.1", 8443),
    }


def make_receive(
    body: bytes = b"", chunks: Sequence[bytes] | None = None, disconnect: bool = False
) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI ``receive`` giving ``body`` in one message, or ``chunks`` one by one."""
    parts = list(chunks) if chunks is not None else [body]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a real server blocks until the client goes away
        return {"type": "http.disconnect"}

    return receive


async def call(
    app: Any,
    method: str = "GET",
    path: str = "/",
    *,
    body: bytes = b"",
    chunks: Sequence[bytes] | None = None,
    send_delay: float = 0.0,
    **scope_kw: Any,
) -> Result:
    """Drive ``app`` with one request and return the response; raises what ``app`` raises."""
    send = Recorder(send_delay)
    await app(make_scope(method, path, **scope_kw), make_receive(body, chunks), send)
    return send.result()
