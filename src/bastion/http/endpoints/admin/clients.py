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

Every response is ``Cache-Control: no-store``; errors are problem+json. Each
endpoint parses its request, calls one of :class:`~bastion.oauth.operations.ClientOperations`
(the operations ``bastion clients`` runs too) and renders the document.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.http.endpoints.admin import common

# Re-exported where their callers have found them (admin/__init__.py, admin/audit.py).
from bastion.http.endpoints.admin.common import (
    ADMIN_API_PREFIX,
    MAX_BODY_BYTES,
    Endpoint,
    json_response,
    parse_body,
    read_body,
)
from bastion.http.endpoints.admin.models import ClientCreate, ClientUpdate, RotateSecret
from bastion.oauth.client_spec import ClientSpec
from bastion.oauth.clients import ClientService
from bastion.oauth.operations import ClientOperations

__all__ = [
    "ADMIN_API_PREFIX",
    "CLIENTS_PATH",
    "MAX_BODY_BYTES",
    "Endpoint",
    "client_routes",
    "json_response",
    "parse_body",
    "read_body",
]

#: Collection path of the client endpoints.
CLIENTS_PATH: Final = f"{ADMIN_API_PREFIX}/clients"
#: PATCH members that have no "unset" value: null is refused rather than guessed.
_NOT_NULLABLE: Final = (
    "name",
    "token_endpoint_auth_method",
    "grant_types",
    "scopes",
    "audiences",
    "redirect_uris",
    "metadata",
)


def _client_id(request: Request) -> str:
    return common.path_id(request, "client_id", "client")


def client_routes(runtime: Any) -> list[Route]:
    """The client endpoints for ``runtime`` (with ``db``, ``shared``, ``settings``,
    ``access_tokens`` and optionally a ready ``clients`` service)."""
    service = common.runtime_service(runtime, "clients", ClientService)
    operations = common.admin_operations(runtime, service, ClientOperations)

    async def list_clients(request: Request) -> Response:
        ops = await operations(request)
        limit, cursor = common.page_params(request)
        return common.json_response(await ops.list(limit=limit, cursor=cursor))

    async def create_client(request: Request) -> Response:
        ops = await operations(request)
        body = await common.parse_body(request, ClientCreate)
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
        doc = await ops.create(spec, body.model_fields_set)
        return common.json_response(doc, 201, {"location": f"{CLIENTS_PATH}/{doc['client_id']}"})

    async def show_client(request: Request) -> Response:
        ops = await operations(request)
        return common.json_response(await ops.show(_client_id(request)))

    async def update_client(request: Request) -> Response:
        ops = await operations(request)
        client_id = _client_id(request)
        body = await common.parse_body(request, ClientUpdate)
        changes = {name: getattr(body, name) for name in body.model_fields_set}
        common.refuse_nulls(changes, _NOT_NULLABLE)
        return common.json_response(await ops.update(client_id, changes))

    async def delete_client(request: Request) -> Response:
        ops = await operations(request)
        await ops.delete(_client_id(request))
        return Response(status_code=204, headers=common.NO_STORE)

    async def rotate_secret(request: Request) -> Response:
        ops = await operations(request)
        client_id = _client_id(request)
        body = await common.parse_body(request, RotateSecret, optional=True)
        return common.json_response(await ops.rotate_secret(client_id, body.grace_seconds))

    async def disable_client(request: Request) -> Response:
        ops = await operations(request)
        return common.json_response(await ops.change_state("disable", _client_id(request)))

    async def enable_client(request: Request) -> Response:
        ops = await operations(request)
        return common.json_response(await ops.change_state("enable", _client_id(request)))

    one = CLIENTS_PATH + "/{client_id}"
    return common.routes_by_method(
        {
            CLIENTS_PATH: {"GET": list_clients, "POST": create_client},
            one: {"GET": show_client, "PATCH": update_client, "DELETE": delete_client},
            one + "/rotate-secret": {"POST": rotate_secret},
            one + "/disable": {"POST": disable_client},
            one + "/enable": {"POST": enable_client},
        }
    )
