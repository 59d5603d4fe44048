"""What every admin API endpoint shares: JSON in and out, pages, path ids, routes by method.

Request bodies are read bounded (:data:`MAX_BODY_BYTES`) and validated by a
strict pydantic model; every response is ``Cache-Control: no-store``; each
path is one route whose 405 names every method it accepts. The changes an
endpoint makes are recorded as the admin token's subject
(:func:`admin_recorder`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.lifecycle import admin_actor
from bastion.credentials.lifecycle import ChangeRecorder
from bastion.http.endpoints.admin.auth import authenticate_admin
from bastion.http.endpoints.admin.errors import (
    InvalidRequestBodyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from bastion.http.endpoints.admin.recording import AdminAudit
from bastion.storage import NotFoundError

__all__ = [
    "ADMIN_API_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_PAGE",
    "NO_STORE",
    "Endpoint",
    "admin_operations",
    "admin_recorder",
    "json_response",
    "page_params",
    "parse_body",
    "path_id",
    "query_error",
    "read_body",
    "refuse_nulls",
    "routes_by_method",
    "runtime_service",
]

ADMIN_API_PREFIX: Final = "/admin/api/v1"
#: Largest request body the admin API reads.
MAX_BODY_BYTES: Final = 64 * 1024
#: Largest page of a listing.
MAX_PAGE: Final = 100
#: Headers of every admin response.
NO_STORE: Final = {"cache-control": "no-store"}
#: What a stored id (and a listing's cursor) can look like; anything else names nothing.
_ID: Final = re.compile(r"[A-Za-z0-9._~-]{1,255}")
_JSON_TYPES: Final = ("application/json", "application/merge-patch+json")

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S")
Ops = TypeVar("Ops")
Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response that is never cached."""
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={**NO_STORE, **(headers or {})},
    )


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


async def read_body(request: Request) -> bytes:
    """The request body, at most :data:`MAX_BODY_BYTES`.

    Raises:
        PayloadTooLargeError: the body (declared or actual) is larger.
        InvalidRequestBodyError: Content-Length is not a number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequestBodyError("Content-Length must be a number of bytes")
        if int(declared) > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the body may hold at most {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLargeError(f"the body may hold at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Read and validate a JSON body as ``model``; an empty body is ``{}`` when ``optional``.

    Raises:
        UnsupportedMediaTypeError: a non-empty body that is not JSON.
        InvalidRequestBodyError: bad JSON or a member of the wrong type / unknown member,
            naming the field path.
        PayloadTooLargeError: the body is too large.
    """
    body = await read_body(request)
    if not body.strip() and optional:
        body = b"{}"
    else:
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media not in _JSON_TYPES:
            raise UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        problems = [
            {"field": _field_path(item["loc"]), "message": item["msg"]}
            for item in error.errors(include_url=False, include_input=False, include_context=False)
        ]
        first = problems[0] if problems else {"field": "body", "message": "invalid"}
        raise InvalidRequestBodyError(
            f"{first['field']}: {first['message']}", errors=problems
        ) from None


def query_error(field: str, detail: str, message: str) -> InvalidRequestBodyError:
    """The 400 of a bad query parameter ``field``."""
    return InvalidRequestBodyError(detail, errors=[{"field": field, "message": message}])


def page_params(request: Request) -> tuple[int, str | None]:
    """A listing's ``limit`` (default 50, at most :data:`MAX_PAGE`) and ``cursor``.

    Raises:
        InvalidRequestBodyError: naming the parameter.
    """
    limit = request.query_params.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
        raise query_error(
            "limit", f"limit must be a whole number from 1 to {MAX_PAGE}", f"1..{MAX_PAGE}"
        )
    cursor = request.query_params.get("cursor") or None
    if cursor is not None and not _ID.fullmatch(cursor):
        raise query_error(
            "cursor",
            "cursor must be a next_cursor from a previous page",
            "not a cursor of this listing",
        )
    return int(limit), cursor


def path_id(request: Request, name: str, noun: str) -> str:
    """The path parameter ``name``; ``NotFoundError`` naming the ``noun`` when no id can look so."""
    value = str(request.path_params[name])
    if not _ID.fullmatch(value):
        raise NotFoundError(f"{noun} {value[:60]!r} does not exist")
    return value


def admin_recorder(
    audit: AdminAudit, request: Request, claims: Mapping[str, Any]
) -> ChangeRecorder:
    """Changes made by this request, recorded as the admin token's subject with its context."""

    def sink(build: Callable[..., Any], *args: Any, **kw: Any) -> None:
        audit.record(request, build, *args, **kw)

    return ChangeRecorder(admin_actor(claims), sink)


def runtime_service(runtime: Any, name: str, kind: type[S]) -> Callable[[], S]:
    """The runtime's ready service ``name`` when it is a ``kind``, else one ``kind`` built on
    its stores the first time it is needed (test runtimes bring only the stores)."""
    built: list[S] = []

    def service() -> S:
        if not built:
            existing = getattr(runtime, name, None)
            if isinstance(existing, kind):
                built.append(existing)
            else:
                make: Callable[..., S] = kind
                built.append(make(runtime.db, runtime.settings, runtime.shared))
        return built[0]

    return service


def admin_operations(
    runtime: Any, service: Callable[[], S], operations: Callable[[S, ChangeRecorder], Ops]
) -> Callable[[Request], Awaitable[Ops]]:
    """What an endpoint starts with: the admin token checked, then the credential's
    operations, recording changes as the token's subject (:func:`admin_recorder`)."""
    audit = AdminAudit(runtime)

    async def authorised(request: Request) -> Ops:
        claims = await authenticate_admin(request, runtime)
        return operations(service(), admin_recorder(audit, request, claims))

    return authorised


def refuse_nulls(changes: Mapping[str, Any], names: Iterable[str]) -> None:
    """Refuse a PATCH that sets one of ``names`` (members with no "unset" value) to null.

    Raises:
        InvalidRequestBodyError: naming the first such member.
    """
    for name in names:
        if name in changes and changes[name] is None:
            raise InvalidRequestBodyError(
                f"{name}: cannot be null; send a value",
                errors=[{"field": name, "message": "cannot be null"}],
            )


def routes_by_method(table: Mapping[str, Mapping[str, Endpoint]]) -> list[Route]:
    """One route per path of ``table`` (path -> method -> endpoint); HEAD is served as GET."""
    return [
        Route(path, _by_method(handlers), methods=list(handlers))
        for path, handlers in table.items()
    ]


def _by_method(handlers: Mapping[str, Endpoint]) -> Endpoint:
    # One route per path, so a 405 names every method the path accepts.
    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch
