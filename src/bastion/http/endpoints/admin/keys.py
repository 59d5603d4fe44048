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
(``bastion:admin``, or ``bastion:admin:read`` for GET). Each endpoint parses
its request, calls one of :class:`~bastion.apikeys.operations.ApiKeyOperations`
(the operations ``bastion keys`` runs too) and renders the document.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.apikeys import ApiKeyService, ApiKeySpec
from bastion.apikeys.operations import ApiKeyOperations, StateChange
from bastion.http.endpoints.admin import common
from bastion.http.endpoints.admin.auth import authenticate_admin
from bastion.http.endpoints.admin.models import (
    ApiKeyCreate,
    ApiKeyUpdate,
    KeyLimitsUpdate,
    RotateApiKey,
)
from bastion.ratelimit.keys import KeyLimitOverrides, describe, parse_override
from bastion.storage.models import ApiKey

__all__ = ["KEYS_PATH", "key_routes"]

#: Collection path of the API key endpoints.
KEYS_PATH: Final = f"{common.ADMIN_API_PREFIX}/keys"
_OWNER_TYPES: Final = ("user", "client")
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
    return common.path_id(request, "key_id", "API key")


def key_routes(runtime: Any) -> list[Route]:
    """The API key endpoints for ``runtime`` (with ``db``, ``shared``, ``settings``,
    ``access_tokens`` and optionally a ready ``api_keys`` service)."""
    service = common.runtime_service(runtime, "api_keys", ApiKeyService)
    operations = common.admin_operations(runtime, service, ApiKeyOperations)

    async def list_keys(request: Request) -> Response:
        ops = await operations(request)
        limit, cursor = common.page_params(request)
        params = request.query_params
        owner_type = params.get("owner_type") or None
        if owner_type is not None and owner_type not in _OWNER_TYPES:
            raise common.query_error(
                "owner_type", "owner_type must be 'user' or 'client'", "one of: user, client"
            )
        owner_id = params.get("owner_id") or None
        if owner_id is not None and len(owner_id) > 255:
            raise common.query_error(
                "owner_id", "owner_id is at most 255 characters", "at most 255 characters"
            )
        page = await ops.list(owner_type=owner_type, owner_id=owner_id, limit=limit, cursor=cursor)
        return common.json_response(page)

    async def create_key(request: Request) -> Response:
        ops = await operations(request)
        body = await common.parse_body(request, ApiKeyCreate)
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
        doc = await ops.create(spec, body.model_fields_set)
        return common.json_response(doc, 201, {"location": f"{KEYS_PATH}/{doc['id']}"})

    async def show_key(request: Request) -> Response:
        ops = await operations(request)
        return common.json_response(await ops.show(_key_id(request)))

    async def update_key(request: Request) -> Response:
        ops = await operations(request)
        key_id = _key_id(request)
        body = await common.parse_body(request, ApiKeyUpdate)
        changes: dict[str, Any] = {name: getattr(body, name) for name in body.model_fields_set}
        common.refuse_nulls(changes, _NOT_NULLABLE)
        for name in ("scopes", "routes", "rate_limits", "ip_allow"):
            if name in changes:
                changes[name] = tuple(changes[name])
        return common.json_response(await ops.update(key_id, changes))

    async def delete_key(request: Request) -> Response:
        ops = await operations(request)
        await ops.delete(_key_id(request))
        return Response(status_code=204, headers=common.NO_STORE)

    async def rotate_key(request: Request) -> Response:
        ops = await operations(request)
        key_id = _key_id(request)
        body = await common.parse_body(request, RotateApiKey, optional=True)
        doc = await ops.rotate(key_id, body.grace_seconds)
        return common.json_response(doc, 201, {"location": f"{KEYS_PATH}/{doc['id']}"})

    def state_change(change: StateChange) -> common.Endpoint:
        async def endpoint(request: Request) -> Response:
            ops = await operations(request)
            return common.json_response(await ops.change_state(change, _key_id(request)))

        return endpoint

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
        return common.json_response(await describe(key.id, key.rate_limits, overrides(), limiter))

    async def show_limits(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        return await limits_view(await service().get(_key_id(request)))

    async def set_limits(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        key = await service().get(_key_id(request))
        body = await common.parse_body(request, KeyLimitsUpdate)
        limits = parse_override([entry.model_dump() for entry in body.limits])
        await overrides().set(key.id, limits)
        return await limits_view(key)

    async def clear_limits(request: Request) -> Response:
        await authenticate_admin(request, runtime)
        key = await service().get(_key_id(request))
        await overrides().clear(key.id)
        return await limits_view(key)

    one = KEYS_PATH + "/{key_id}"
    return common.routes_by_method(
        {
            KEYS_PATH: {"GET": list_keys, "POST": create_key},
            one: {"GET": show_key, "PATCH": update_key, "DELETE": delete_key},
            one + "/rotate": {"POST": rotate_key},
            one + "/revoke": {"POST": state_change("revoke")},
            one + "/disable": {"POST": state_change("disable")},
            one + "/enable": {"POST": state_change("enable")},
            one + "/limits": {"GET": show_limits, "PUT": set_limits, "DELETE": clear_limits},
        }
    )
