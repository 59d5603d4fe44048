"""Exceptions become problem+json; unexpected ones never leak their text or traceback."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest
from http_support import client_for, make_runtime
from starlette.routing import Route

from bastion.errors import BastionError
from bastion.http.app import create_app
from bastion.http.middleware import ErrorMiddleware
from bastion.storage.errors import DatabaseUnavailableError


class ForbiddenScopeError(BastionError):
    code = "insufficient_scope"
    status = 403
    title = "Insufficient scope"


def raising_app(exc: BaseException) -> Any:
    """The app with an endpoint at ``/admin/raise`` (and only there) raising ``exc``."""

    async def endpoint(request: Any) -> Any:
        raise exc

    return create_app(make_runtime(), routes=[Route("/admin/raise", endpoint)])


async def test_bastion_error_renders_its_status_and_code() -> None:
    app = raising_app(ForbiddenScopeError("needs orders:write"))
    async with client_for(app) as client:
        response = await client.get("/admin/raise", headers={"x-request-id": "req-7"})
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"] == "req-7"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json() == {
        "type": "urn:bastion:problem:insufficient_scope",
        "title": "Insufficient scope",
        "status": 403,
        "detail": "needs orders:write",
        "reason": "insufficient_scope",
        "request_id": "req-7",
    }


async def test_service_unavailable_is_503_with_retry_after() -> None:
    app = raising_app(DatabaseUnavailableError("database down"))
    async with client_for(app) as client:
        response = await client.get("/admin/raise")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["reason"] == "database_unavailable"


async def test_unexpected_exception_is_500_without_leaking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "password=hunter2 at db.internal"
    app = raising_app(ValueError(secret))
    with caplog.at_level(logging.ERROR, logger="bastion.http"):
        async with client_for(app) as client:
            response = await client.get("/admin/raise", headers={"x-request-id": "boom-1"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.text
    assert "Traceback" not in body
    assert "hunter2" not in body
    assert "ValueError" not in body
    assert response.json() == {
        "type": "urn:bastion:problem:internal_error",
        "title": "Internal error",
        "status": 500,
        "detail": "Internal error",
        "reason": "internal_error",
        "request_id": "boom-1",
    }
    records = [r for r in caplog.records if r.name == "bastion.http"]
    assert records and records[0].exc_info is not None
    assert "boom-1" in records[0].getMessage()


async def test_error_after_response_started_is_logged_not_rendered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-stream")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/", "headers": [], "bastion.request_id": "r9"}
    with caplog.at_level(logging.ERROR, logger="bastion.http"):
        await ErrorMiddleware(app)(scope, None, send)  # type: ignore[arg-type]
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert "after the response started" in caplog.records[0].getMessage()


async def test_websocket_error_closes_with_policy_code() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise ForbiddenScopeError()

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await ErrorMiddleware(app)({"type": "websocket", "path": "/"}, None, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "insufficient_scope"}]


async def test_problem_body_is_json_bytes() -> None:
    app = raising_app(ForbiddenScopeError())
    async with client_for(app) as client:
        response = await client.get("/admin/raise")
    assert orjson.loads(response.content)["status"] == 403
