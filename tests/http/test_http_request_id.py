"""X-Request-Id acceptance, generation and echo."""

from __future__ import annotations

import re
from typing import Any

import pytest

from bastion.http.middleware import RequestIdMiddleware, get_request_id

GENERATED = re.compile(r"[0-9a-f]{12}-[0-9a-f]+")


def http_scope(headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "https",
        "method": "GET",
        "path": "/",
        "headers": headers or [],
    }


async def run(
    headers: list[tuple[bytes, bytes]] | None = None,
    response_headers: list[tuple[bytes, bytes]] | None = None,
    middleware: RequestIdMiddleware | None = None,
) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send(
            {"type": "http.response.start", "status": 200, "headers": response_headers or []}
        )
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    mw = middleware or RequestIdMiddleware(app)
    mw._app = app
    await mw(http_scope(headers), receive, send)
    return seen, list(sent[0]["headers"])


@pytest.mark.parametrize("incoming", [b"abc", b"A-Z_0.9:x", b"x" * 64, b"01HZX3K5V7-req.42:node-a"])
async def test_valid_incoming_id_is_kept_and_echoed(incoming: bytes) -> None:
    scope, headers = await run([(b"x-request-id", incoming)])
    assert get_request_id(scope) == incoming.decode()
    assert scope["state"]["request_id"] == incoming.decode()
    assert headers == [(b"x-request-id", incoming)]


@pytest.mark.parametrize(
    "incoming",
    [
        b"",
        b"x" * 65,
        b"has space",
        b"abc\r\nSet-Cookie: a=b",
        b"abc\n",
        b"caf\xc3\xa9",
        b"<script>",
        b"a/b",
    ],
)
async def test_bad_incoming_id_is_replaced(incoming: bytes) -> None:
    scope, headers = await run([(b"x-request-id", incoming)])
    rid = get_request_id(scope)
    assert GENERATED.fullmatch(rid), rid
    assert headers == [(b"x-request-id", rid.encode())]


async def test_missing_id_is_generated_unique() -> None:
    mw = RequestIdMiddleware(lambda *a: None)  # type: ignore[arg-type,return-value]
    ids = set()
    for _ in range(50):
        scope, _ = await run(middleware=mw)
        ids.add(get_request_id(scope))
    assert len(ids) == 50
    assert all(GENERATED.fullmatch(rid) for rid in ids)


async def test_prefix_is_used() -> None:
    mw = RequestIdMiddleware(lambda *a: None, prefix="node7")  # type: ignore[arg-type,return-value]
    scope, _ = await run(middleware=mw)
    assert get_request_id(scope) == "node7-1"


async def test_response_id_set_by_app_is_kept() -> None:
    _, headers = await run(response_headers=[(b"x-request-id", b"from-app")])
    assert headers == [(b"x-request-id", b"from-app")]


async def test_only_first_incoming_header_counts() -> None:
    scope, _ = await run([(b"x-request-id", b"bad id"), (b"x-request-id", b"good")])
    assert GENERATED.fullmatch(get_request_id(scope))


async def test_lifespan_passes_through() -> None:
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["type"])

    await RequestIdMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert called == ["lifespan"]
