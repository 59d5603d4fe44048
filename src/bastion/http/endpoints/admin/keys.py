"""Admin API: API keys under ``/admin/api/v1/keys``.

=======  =======================================================  ================================
method   path                                                     does
=======  =======================================================  ================================
GET      /admin/api/v1/keys?owner_type=&owner_id=&limit=&cursor=  list (keyset pages)
POST     /admin/api/v1/keys                                       create (201, key shown once)
GET      /admin/api/v1/keys/{key_id}                              show
PATCH    /admin/api/v1/keys/{key_id}                              change members
DELETE   /admin/api/v1/keys/{key_id}                              delete (204)
POST     /admin/api/v1/keys/{key_id}/rotate                       successor (201, key shown once)
POST     /admin/api/v1/keys/{key_id}/revoke                       revoke (for good)
POST     /admin/api/v1/keys/{key_id}/disable                      disable
POST     /admin/api/v1/keys/{key_id}/enable                       enable
GET      /admin/api/v1/keys/{key_id}/limits                       effective limits + current usage
PUT      /admin/api/v1/keys/{key_id}/limits                       override the key's limits
DELETE   /admin/api/v1/keys/{key_id}/limits                       drop the override
=======  =======================================================  ================================

The full key appears in exactly two responses — create and rotate — and
nowhere else: listings show the non-secret display ``prefix``, never the key
or its digest. Every response is ``Cache-Control: no-store``; errors are
problem+json. Same authentication as the rest of the admin API
(``bastion:admin``, or ``bastion:admin:read`` for GET).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.apikeys import ApiKeyService, ApiKeySpec, api_key_view
from bastion.audit.lifecycle import admin_actor, api_key_changed
from bastion.http.endpoints.admin.auth import authenticate_admin
from bastion.http.endpoints.admin.clients import (
    ADMIN_API_PREFIX,
    Endpoint,
    json_response,
    parse_body,
)
from bastion.http.endpoints.admin.errors import InvalidRequestBodyError
from bastion.http.endpoints.admin.models import (
    ApiKeyCreate,
    ApiKeyUpdate,
    KeyLimitsUpdate,
    RotateApiKey,
)
from bastion.http.endpoints.admin.recording import AdminAudit
from bastion.ratelimit.keys import KeyLimitOverrides, describe, parse_override
from bastion.storage import NotFoundError
from bastion.storage.models import ApiKey

__all__ = ["KEYS_PATH", "key_routes"]

#: Collection path of the API key endpoints.
KEYS_PATH: Final = f"{ADMIN_API_PREFIX}/keys"
_MAX_PAGE: Final = 100
_ID: Final = re.compile(r"[A-Za-z0-9._~-]{1,255}")
_OWNER_TYPES: Final = ("user", "client")
_NO_STORE: Final = {"cache-control": "no-store"}
#: PATCH members that have no "unset" value: null is refused rather than guessed.
_NOT_NULLABLE: Final = (
    "name",
    "scopes",
    "routes",
    "rate_limits",
    "ip_allow",
    "metadata",
    "disabled",
)


def _key_id(request: Request) -> str:
    key_id = str(request.path_params["key_id"])
    if not _ID.fullmatch(key_id):
        raise NotFoundError(f"API key {key_id[:60]!r} does not exist")
    return key_id


def _query_error(field: str, detail: str, message: str) -> InvalidRequestBodyError:
    return InvalidRequestBodyError(detail, errors=[{"field": field, "message": message}])


def key_routes(runtime: Any) -> list[Route]:
    """The API key endpoints for ``runtime`` (with ``db``, ``shared``, ``settings``,
    ``access_tokens`` and optionally a ready ``api_keys`` service)."""
    services: list[ApiKeyService] = []
    audit = AdminAudit(runtime)

    def changed(
        request: Request,
        claims: Mapping[str, Any],
        action: str,
        key_id: str,
        fields: Any = (),
        **extra: Any,
    ) -> None:
        audit.record(request, api_key_changed, admin_actor(claims), action, key_id, fields, **extra)

    def service() -> ApiKeyService:
        if not services:
            existing = getattr(runtime, "api_keys", None)
            if isinstance(existing, ApiKeyService):
                services.append(existing)
            else:
                services.append(ApiKeyService(runtime.db, runtime.settings, runtime.shared))
        return services[0]

    def render(
        key: ApiKey,
        secret: str | None = None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        doc = api_key_view(key, datetime.now(UTC))
        if secret is not None:
            doc["key"] = secret
        return json_response(doc, status, headers)

    async def list_keys(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        params = request.query_params
        limit_text = params.get("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= _MAX_PAGE:
            raise _query_error(
                "limit", f"limit must be a whole number from 1 to {_MAX_PAGE}", f"1..{_MAX_PAGE}"
            )
        cursor = params.get("cursor") or None
        if cursor is not None and not _ID.fullmatch(cursor):
            raise _query_error(
                "cursor",
                "cursor must be a next_cursor from a previous page",
                "not a cursor of this listing",
            )
        owner_type = params.get("owner_type") or None
        if owner_type is not None and owner_type not in _OWNER_TYPES:
            raise _query_error(
                "owner_type", "owner_type must be 'user' or 'client'", "one of: user, client"
            )
        owner_id = params.get("owner_id") or None
        if owner_id is not None and len(owner_id) > 255:
            raise _query_error(
                "owner_id", "owner_id is at most 255 characters", "at most 255 characters"
            )
        page = await service().list(
            owner_type=owner_type, owner_id=owner_id, limit=int(limit_text), cursor=cursor
        )
        now = datetime.now(UTC)
        items = [api_key_view(key, now) for key in page.items]
        return json_response({"items": items, "next_cursor": page.next_cursor})

    async def create_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        body = await parse_body(request, ApiKeyCreate)
        spec = ApiKeySpec(
            name=body.name,
            owner_type=body.owner_type,
            owner_id=body.owner_id,
            scopes=tuple(body.scopes),
            routes=tuple(body.routes),
            expires_at=body.expires_at,
            rate_limits=tuple(body.rate_limits),
            ip_allow=tuple(body.ip_allow),
            metadata=body.metadata,
        )
        key, secret = await service().create(spec)
        changed(request, claims, "created", key.id, body.model_fields_set)
        return render(key, secret, status=201, headers={"location": f"{KEYS_PATH}/{key.id}"})

    async def show_key(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        return render(await service().get(_key_id(request)))

    async def update_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        key_id = _key_id(request)
        body = await parse_body(request, ApiKeyUpdate)
        changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
        for name in _NOT_NULLABLE:
            if name in changes and changes[name] is None:
                raise InvalidRequestBodyError(
                    f"{name}: cannot be null; send a value",
                    errors=[{"field": name, "message": "cannot be null"}],
                )
        for name in ("scopes", "routes", "rate_limits", "ip_allow"):
            if name in changes:
                changes[name] = tuple(changes[name])
        if not changes:
            return render(await service().get(key_id))
        key = await service().update(key_id, **changes)
        changed(request, claims, "updated", key_id, changes)
        return render(key)

    async def delete_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        key_id = _key_id(request)
        await service().delete(key_id)
        changed(request, claims, "deleted", key_id)
        return Response(status_code=204, headers=_NO_STORE)

    async def rotate_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        key_id = _key_id(request)
        body = await parse_body(request, RotateApiKey, optional=True)
        successor, secret = await service().rotate(key_id, grace=body.grace_seconds)
        changed(request, claims, "rotated", key_id, ["grace_until"], successor=successor.id)
        return render(
            successor, secret, status=201, headers={"location": f"{KEYS_PATH}/{successor.id}"}
        )

    async def revoke_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        key = await service().revoke(_key_id(request))
        changed(request, claims, "revoked", key.id, ["revoked_at"])
        return render(key)

    async def disable_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        key = await service().disable(_key_id(request))
        changed(request, claims, "disabled", key.id, ["disabled"])
        return render(key)

    async def enable_key(request: Request) -> Response:
        claims = await authenticate_admin(request, runtime)
        key = await service().enable(_key_id(request))
        changed(request, claims, "enabled", key.id, ["disabled"])
        return render(key)

    limits_state: list[KeyLimitOverrides] = []

    def overrides() -> KeyLimitOverrides:
        # The running gateway's own (Runtime.control): a change made here applies on this
        # node at once (and on the others through the announcement).
        if not limits_state:
            found = getattr(getattr(runtime, "control", None), "key_overrides", None)
            if not isinstance(found, KeyLimitOverrides):
                found = KeyLimitOverrides(runtime.db, runtime.shared)
            limits_state.append(found)
        return limits_state[0]

    async def limits_view(key: ApiKey) -> Response:
        limiter = getattr(getattr(runtime, "control", None), "limiter", None)
        return json_response(await describe(key.id, key.rate_limits, overrides(), limiter))

    async def show_limits(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        return await limits_view(await service().get(_key_id(request)))

    async def set_limits(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        key = await service().get(_key_id(request))
        body = await parse_body(request, KeyLimitsUpdate)
        limits = parse_override([entry.model_dump() for entry in body.limits])
        await overrides().set(key.id, limits)
        return await limits_view(key)

    async def clear_limits(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        key = await service().get(_key_id(request))
        await overrides().clear(key.id)
        return await limits_view(key)

    one = KEYS_PATH + "/{key_id}"
    table: dict[str, dict[str, Endpoint]] = {
        KEYS_PATH: {"GET": list_keys, "POST": create_key},
        one: {"GET": show_key, "PATCH": update_key, "DELETE": delete_key},
        one + "/rotate": {"POST": rotate_key},
        one + "/revoke": {"POST": revoke_key},
        one + "/disable": {"POST": disable_key},
        one + "/enable": {"POST": enable_key},
        one + "/limits": {"GET": show_limits, "PUT": set_limits, "DELETE": clear_limits},
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
