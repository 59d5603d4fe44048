"""Admin API: OAuth clients under ``/admin/api/v1/clients``.

=======  ==========================================  ===============================
method   path                                        does
=======  ==========================================  ===============================
GET      /admin/api/v1/clients?limit=&cursor=        list (keyset pages)
POST     /admin/api/v1/clients                       create (201, secret shown once)
GET      /admin/api/v1/clients/{client_id}           show
PATCH    /admin/api/v1/clients/{client_id}           change members
DELETE   /admin/api/v1/clients/{client_id}           delete (204)
POST     /admin/api/v1/clients/{client_id}/rotate-secret   new secret, old ones in grace
POST     /admin/api/v1/clients/{client_id}/disable   disable
POST     /admin/api/v1/clients/{client_id}/enable    enable
=======  ==========================================  ===============================

Every response is ``Cache-Control: no-store``; errors are problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.audit.lifecycle import admin_actor, client_changed
from bastion.http.endpoints.admin.auth import authenticate_admin
from bastion.http.endpoints.admin.errors import (
    InvalidRequestBodyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from bastion.http.endpoints.admin.models import (
    ClientCreate,
    ClientUpdate,
    RotateSecret,
    client_out,
)
from bastion.http.endpoints.admin.recording import AdminAudit
from bastion.oauth.clients import ClientService, ClientSpec
from bastion.storage import Client, NotFoundError

__all__ = ["ADMIN_API_PREFIX", "MAX_BODY_BYTES", "client_routes"]

ADMIN_API_PREFIX: Final = "/admin/api/v1"
#: Largest request body the admin API reads.
MAX_BODY_BYTES: Final = 64 * 1024
_MAX_PAGE: Final = 100
_CLIENT_ID: Final = re.compile(r"[A-Za-z0-9._~-]{1,255}")
_JSON_TYPES: Final = ("application/json", "application/merge-patch+json")
_NO_STORE: Final = {"cache-control": "no-store"}

M = TypeVar("M", bound=BaseModel)
Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response that is never cached."""
    return Response(
        orjson.dumps(data),
        status_code=status,
        media_type="application/json",
        headers={**_NO_STORE, **(headers or {})},
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


def _client_id(request: Request) -> str:
    client_id = str(request.path_params["client_id"])
    if not _CLIENT_ID.fullmatch(client_id):
        raise NotFoundError(f"client {client_id[:60]!r} does not exist")
    return client_id


def client_routes(runtime: Any) -> list[Route]:
    """The client endpoints for ``runtime`` (with ``db``, ``shared``, ``settings``,
    ``access_tokens`` and optionally a ready ``clients`` service)."""
    services: list[ClientService] = []
    audit = AdminAudit(runtime)

    def changed(
        request: Request, claims: Mapping[str, Any], action: str, client_id: str, fields: Any = ()
    ) -> None:
        audit.record(request, client_changed, admin_actor(claims), action, client_id, fields)

    def service() -> ClientService:
        if not services:
            existing = getattr(runtime, "clients", None)
            if isinstance(existing, ClientService):
                services.append(existing)
            else:
                services.append(ClientService(runtime.db, runtime.settings, runtime.shared))
        return services[0]

    async def render(
        client: Client,
        secret: str | None = None,
        *,
        with_secret: bool = False,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        doc = client_out(client, await service().list_secrets(client.client_id))
        if with_secret:
            doc["client_secret"] = secret
        return json_response(doc, status, headers)

    async def list_clients(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        limit_text = request.query_params.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_PAGE:
            raise InvalidRequestBodyError(
                f"limit must be a whole number from 1 to {_MAX_PAGE}",
                errors=[{"field": "limit", "message": f"1..{_MAX_PAGE}"}],
            )
        cursor = request.query_params.get("cursor") or None
        if cursor is not None and not _CLIENT_ID.fullmatch(cursor):
            raise InvalidRequestBodyError(
                "cursor must be a next_cursor from a previous page",
                errors=[{"field": "cursor", "message": "not a cursor of this listing"}],
            )
        page = await service().list(limit=int(limit_text), cursor=cursor)
        items = [
            client_out(client, await service().list_secrets(client.client_id))
            for client in page.items
        ]
        return json_response({"items": items, "next_cursor": page.next_cursor})

    async def create_client(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        body = await parse_body(request, ClientCreate)
        spec = ClientSpec(
            name=body.name,
            client_type=body.client_type,
            token_endpoint_auth_method=body.token_endpoint_auth_method,
            grant_types=body.grant_types,
            scopes=body.scopes,
            audiences=body.audiences,
            access_token_ttl=body.access_token_ttl,
            redirect_uris=body.redirect_uris,
            jwks=body.jwks,
            metadata=body.metadata,
        )
        client, secret = await service().create(spec)
        changed(request, claims, "created", client.client_id, body.model_fields_set)
        location = f"{ADMIN_API_PREFIX}/clients/{client.client_id}"
        return await render(
            client, secret, with_secret=True, status=201, headers={"location": location}
        )

    async def show_client(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        return await render(await service().get(_client_id(request)))

    async def update_client(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        client_id = _client_id(request)
        body = await parse_body(request, ClientUpdate)
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        for name in (
            "name",
            "token_endpoint_auth_method",
            "grant_types",
            "scopes",
            "audiences",
            "redirect_uris",
            "metadata",
        ):
            if name in changes and changes[name] is None:
                raise InvalidRequestBodyError(
                    f"{name}: cannot be null; send a value",
                    errors=[{"field": name, "message": "cannot be null"}],
                )
        client = await service().update(client_id, **changes)
        if changes:
            changed(request, claims, "updated", client_id, changes)
        return await render(client)

    async def delete_client(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        client_id = _client_id(request)
        await service().delete(client_id)
        changed(request, claims, "deleted", client_id)
        return Response(status_code=204, headers=_NO_STORE)

    async def rotate_secret(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        client_id = _client_id(request)
        body = await parse_body(request, RotateSecret, optional=True)
        secret = await service().rotate_secret(client_id, grace=body.grace_seconds)
        changed(request, claims, "secret_rotated", client_id, ["client_secret"])
        return await render(await service().get(client_id), secret, with_secret=True)

    async def disable_client(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        client = await service().disable(_client_id(request))
        changed(request, claims, "disabled", client.client_id, ["disabled"])
        return await render(client)

    async def enable_client(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        client = await service().enable(_client_id(request))
        changed(request, claims, "enabled", client.client_id, ["disabled"])
        return await render(client)

    base = f"{ADMIN_API_PREFIX}/clients"
    one = base + "/{client_id}"
    table: dict[str, dict[str, Endpoint]] = {
        base: {"GET": list_clients, "POST": create_client},
        one: {"GET": show_client, "PATCH": update_client, "DELETE": delete_client},
        one + "/rotate-secret": {"POST": rotate_secret},
        one + "/disable": {"POST": disable_client},
        one + "/enable": {"POST": enable_client},
    }
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
