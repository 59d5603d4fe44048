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

from pydantic import BaseModel
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
from bastion.http.runtime import AdminPlane, ready_service
from bastion.ratelimit.keys import KeyLimitOverrides, describe, parse_override
from bastion.storage.models import ApiKey

__all__ = ["KEYS_PATH", "KeyEndpoints", "key_routes"]

#: Collection path of the API key endpoints.
KEYS_PATH: Final = f"{common.ADMIN_API_PREFIX}/keys"
_OWNER_TYPES: Final = ("user", "client")
#: PATCH members that are lists in the body and tuples in the operations.
_TUPLES: Final = ("scopes", "routes", "rate_limits", "ip_allow")


class KeyEndpoints(common.RecordEndpoints[ApiKeyOperations, StateChange]):
    """The API key endpoints over the runtime's ``api_keys`` service (one over its stores
    when the runtime has none) and its gateway's limit overrides."""

    path = KEYS_PATH
    id_param = "key_id"
    noun = "API key"
    id_member = "id"
    update_model = ApiKeyUpdate
    not_nullable = ("name", "scopes", "routes", "rate_limits", "ip_allow", "metadata", "disabled")

    def __init__(self, runtime: AdminPlane) -> None:
        self._runtime = runtime
        self._service = ready_service(runtime, lambda plane: plane.api_keys, ApiKeyService)
        super().__init__(runtime, self._service, ApiKeyOperations)
        self._overrides: list[KeyLimitOverrides] = []

    async def list_keys(self, request: Request) -> Response:
        ops = await self.operations(request)
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

    async def create_key(self, request: Request) -> Response:
        ops = await self.operations(request)
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
        return self.created(await ops.create(spec, body.model_fields_set))

    def changes(self, body: BaseModel) -> dict[str, Any]:
        changes = super().changes(body)
        for name in _TUPLES:
            if name in changes:
                changes[name] = tuple(changes[name])
        return changes

    async def rotate_key(self, request: Request) -> Response:
        ops = await self.operations(request)
        key_id = self.record_id(request)
        body = await common.parse_body(request, RotateApiKey, optional=True)
        return self.created(await ops.rotate(key_id, body.grace_seconds))

    def _limit_overrides(self) -> KeyLimitOverrides:
        # The running gateway's own (Runtime.control): a change made here applies on this
        # node at once (and on the others through the announcement).
        if not self._overrides:
            control = self._runtime.control
            found = control.key_overrides if control is not None else None
            if found is None:
                found = KeyLimitOverrides(self._runtime.db, self._runtime.shared)
            self._overrides.append(found)
        return self._overrides[0]

    async def _limits_view(self, key: ApiKey) -> Response:
        control = self._runtime.control
        limiter = control.limiter if control is not None else None
        overrides = self._limit_overrides()
        return common.json_response(await describe(key.id, key.rate_limits, overrides, limiter))

    async def _limited_key(self, request: Request) -> ApiKey:
        await authenticate_admin(request, self._runtime)
        return await self._service().get(self.record_id(request))

    async def show_limits(self, request: Request) -> Response:
        return await self._limits_view(await self._limited_key(request))

    async def set_limits(self, request: Request) -> Response:
        key = await self._limited_key(request)
        body = await common.parse_body(request, KeyLimitsUpdate)
        limits = parse_override([entry.model_dump() for entry in body.limits])
        await self._limit_overrides().set(key.id, limits)
        return await self._limits_view(key)

    async def clear_limits(self, request: Request) -> Response:
        key = await self._limited_key(request)
        await self._limit_overrides().clear(key.id)
        return await self._limits_view(key)

    def routes(self) -> list[Route]:
        one = self.one
        return common.routes_by_method(
            {
                self.path: {"GET": self.list_keys, "POST": self.create_key},
                **self.record_table(),
                one + "/rotate": {"POST": self.rotate_key},
                one + "/revoke": {"POST": self.state_change("revoke")},
                one + "/disable": {"POST": self.state_change("disable")},
                one + "/enable": {"POST": self.state_change("enable")},
                one + "/limits": {
                    "GET": self.show_limits,
                    "PUT": self.set_limits,
                    "DELETE": self.clear_limits,
                },
            }
        )


def key_routes(runtime: AdminPlane) -> list[Route]:
    """The API key endpoints for ``runtime``."""
    return KeyEndpoints(runtime).routes()
