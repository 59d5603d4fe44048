"""What every admin API endpoint shares: JSON in and out, pages, path ids, routes by method.

Request bodies are read bounded (:data:`MAX_BODY_BYTES`) and validated by a
strict pydantic model; every response is ``Cache-Control: no-store``; each
path is one route whose 405 names every method it accepts. The changes an
endpoint makes are recorded as the admin token's subject
(:func:`admin_recorder`). :class:`RecordEndpoints` holds what the endpoints of
every kind of stored credential (clients, API keys) do alike.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.lifecycle import admin_actor
from bastion.credentials.lifecycle import ChangeRecorder
from bastion.http.body import read_bounded, validation_problems
from bastion.http.endpoints.admin.auth import authenticate_admin
from bastion.http.endpoints.admin.errors import (
    InvalidRequestBodyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from bastion.http.endpoints.admin.recording import AdminAudit
from bastion.http.runtime import AdminPlane
from bastion.storage import NotFoundError

__all__ = [
    "ADMIN_API_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_PAGE",
    "NO_STORE",
    "Endpoint",
    "RecordEndpoints",
    "RecordOperations",
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
# The state changes a kind of record takes ("disable", "enable", ...): C in the
# RecordOperations protocol (it only takes them), Change in RecordEndpoints.
C = TypeVar("C", contravariant=True)
Change = TypeVar("Change")
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


async def read_body(request: Request) -> bytes:
    """The request body, at most :data:`MAX_BODY_BYTES`.

    Raises:
        PayloadTooLargeError: the body (declared or actual) is larger.
        InvalidRequestBodyError: Content-Length is not a number.
    """
    return await read_bounded(
        request,
        MAX_BODY_BYTES,
        lambda: PayloadTooLargeError(f"the body may hold at most {MAX_BODY_BYTES} bytes"),
        invalid=InvalidRequestBodyError,
    )


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
        detail, problems = validation_problems(error)
        raise InvalidRequestBodyError(detail, errors=problems) from None


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


def admin_operations(
    runtime: AdminPlane, service: Callable[[], S], operations: Callable[[S, ChangeRecorder], Ops]
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


class RecordOperations(Protocol[C]):
    """The operations every kind of admin record has (``ClientOperations``,
    ``ApiKeyOperations``): each takes the record's id and returns its document."""

    async def show(self, record_id: str, /) -> dict[str, Any]: ...
    async def update(self, record_id: str, changes: Mapping[str, Any], /) -> dict[str, Any]: ...
    async def delete(self, record_id: str, /) -> None: ...
    async def change_state(self, change: C, record_id: str, /) -> dict[str, Any]: ...


RecordOps = TypeVar("RecordOps", bound=RecordOperations[Any])


class RecordEndpoints(Generic[RecordOps, Change]):
    """The endpoints of one kind of admin record that are alike for every kind: its id read
    from the path, show, change (PATCH), delete, state changes, and the 201 of a created one.

    A subclass names the collection and its models; every endpoint first checks the admin
    token and opens the record's operations as the token's subject (:func:`admin_operations`).
    """

    #: The collection's path.
    path: ClassVar[str]
    #: The path parameter naming one record, and the noun its 404 uses.
    id_param: ClassVar[str]
    noun: ClassVar[str]
    #: The member of a record's document that holds its id (the ``Location`` of a new one).
    id_member: ClassVar[str]
    #: The body of a PATCH, and its members that have no "unset" value (null is refused).
    update_model: ClassVar[type[BaseModel]]
    not_nullable: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        runtime: AdminPlane,
        service: Callable[[], S],
        operations: Callable[[S, ChangeRecorder], RecordOps],
    ) -> None:
        self.operations = admin_operations(runtime, service, operations)
        self.one = f"{self.path}/{{{self.id_param}}}"

    def record_id(self, request: Request) -> str:
        """The id in the request's path (``NotFoundError`` when no id can look so)."""
        return path_id(request, self.id_param, self.noun)

    def created(self, doc: Mapping[str, Any]) -> Response:
        """The 201 of a new record (or a successor), with its ``Location``."""
        return json_response(doc, 201, {"location": f"{self.path}/{doc[self.id_member]}"})

    def changes(self, body: BaseModel) -> dict[str, Any]:
        """The members a PATCH sets, as the operations take them."""
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        refuse_nulls(changes, self.not_nullable)
        return changes

    async def show(self, request: Request) -> Response:
        ops = await self.operations(request)
        return json_response(await ops.show(self.record_id(request)))

    async def update(self, request: Request) -> Response:
        ops = await self.operations(request)
        record_id = self.record_id(request)
        body = await parse_body(request, self.update_model)
        return json_response(await ops.update(record_id, self.changes(body)))

    async def delete(self, request: Request) -> Response:
        ops = await self.operations(request)
        await ops.delete(self.record_id(request))
        return Response(status_code=204, headers=NO_STORE)

    def state_change(self, change: Change) -> Endpoint:
        """The endpoint that makes ``change`` (``POST .../{id}/<change>``)."""

        async def endpoint(request: Request) -> Response:
            ops = await self.operations(request)
            return json_response(await ops.change_state(change, self.record_id(request)))

        return endpoint

    def record_table(self) -> dict[str, Mapping[str, Endpoint]]:
        """``{one record's path: {GET: show, PATCH: update, DELETE: delete}}``."""
        return {self.one: {"GET": self.show, "PATCH": self.update, "DELETE": self.delete}}
