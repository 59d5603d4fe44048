"""HttpMiddleware answers exactly as the three stacked middlewares would, with one wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bastion.errors import BastionError
from bastion.http.middleware import ErrorMiddleware, RequestIdMiddleware, SecurityHeadersMiddleware
from bastion.http.middleware.combined import HttpMiddleware

App = Callable[[Any, Any, Any], Awaitable[None]]


class Denied(BastionError):
    code = "denied"
    status = 403
    title = "Denied"


def scope(scheme: str = "https", request_id: bytes | None = None) -> dict[str, Any]:
    headers = [(b"host", b"api.example.com")]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    return {"type": "http", "method": "GET", "path": "/x", "scheme": scheme, "headers": headers}


async def run(app: App, the_scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    try:
        await app(the_scope, receive, send)
    except Exception as exc:  # pragma: no cover - a failure of the test itself
        pytest.fail(f"escaped: {exc!r}")
    return sent


def both(inner: App) -> tuple[App, App]:
    stacked = RequestIdMiddleware(
        SecurityHeadersMiddleware(ErrorMiddleware(inner), server_header=b"bastion"), prefix="n1"
    )
    combined = HttpMiddleware(
        inner,
        request_ids=RequestIdMiddleware(inner, prefix="n1"),
        security=SecurityHeadersMiddleware(inner, server_header=b"bastion"),
    )
    return stacked, combined


async def ok(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]}
    )
    await send({"type": "http.response.body", "body": b"<p>hi</p>"})


async def upstream_headers(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"X-Request-Id", b"upstream-1"), (b"referrer-policy", b"origin")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def denied(scope: Any, receive: Any, send: Any) -> None:
    raise Denied("no")


async def broken(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("secret detail")


async def broken_mid_response(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    raise RuntimeError("after start")


@pytest.mark.parametrize("inner", [ok, upstream_headers, denied, broken, broken_mid_response])
@pytest.mark.parametrize("the_scope", [scope(), scope("http"), scope(request_id=b"req-9")])
async def test_same_messages_as_the_stack(inner: App, the_scope: dict[str, Any]) -> None:
    stacked, combined = both(inner)
    expected = await run(stacked, dict(the_scope))
    got = await run(combined, dict(the_scope))
    assert got == expected
    assert expected  # every case answers something


async def test_error_response_carries_request_id_and_security_headers() -> None:
    _, combined = both(denied)
    sent = await run(combined, scope(request_id=b"req-9"))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 403
    assert headers[b"x-request-id"] == b"req-9"
    assert headers[b"strict-transport-security"].startswith(b"max-age=")
    assert b"secret" not in sent[1]["body"]
