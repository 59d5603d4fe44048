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

from typing import Final

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
from bastion.http.runtime import AdminPlane, ready_service
from bastion.oauth.client_spec import ClientSpec
from bastion.oauth.clients import ClientService
from bastion.oauth.operations import ClientOperations, ClientStateChange

__all__ = [
    "ADMIN_API_PREFIX",
    "CLIENTS_PATH",
    "MAX_BODY_BYTES",
    "ClientEndpoints",
    "Endpoint",
    "client_routes",
    "json_response",
    "parse_body",
    "read_body",
]

#: Collection path of the client endpoints.
CLIENTS_PATH: Final = f"{ADMIN_API_PREFIX}/clients"


class ClientEndpoints(common.RecordEndpoints[ClientOperations, ClientStateChange]):
    """The client endpoints over the runtime's ``clients`` service (one over its stores
    when the runtime has none)."""

    path = CLIENTS_PATH
    id_param = "client_id"
    noun = "client"
    id_member = "client_id"
    update_model = ClientUpdate
    not_nullable = (
        "name",
        "token_endpoint_auth_method",
        "grant_types",
        "scopes",
        "audiences",
        "redirect_uris",
        "metadata",
        "post_logout_redirect_uris",
        "backchannel_logout_session_required",
    )

    def __init__(self, runtime: AdminPlane) -> None:
        service = ready_service(runtime, lambda plane: plane.clients, ClientService)
        super().__init__(runtime, service, ClientOperations)

    async def list_clients(self, request: Request) -> Response:
        ops = await self.operations(request)
        limit, cursor = common.page_params(request)
        return common.json_response(await ops.list(limit=limit, cursor=cursor))

    async def create_client(self, request: Request) -> Response:
        ops = await self.operations(request)
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
            id_token_signed_response_alg=body.id_token_signed_response_alg,
            post_logout_redirect_uris=body.post_logout_redirect_uris,
            backchannel_logout_uri=body.backchannel_logout_uri,
            backchannel_logout_session_required=body.backchannel_logout_session_required,
        )
        return self.created(await ops.create(spec, body.model_fields_set))

    async def rotate_secret(self, request: Request) -> Response:
        ops = await self.operations(request)
        client_id = self.record_id(request)
        body = await common.parse_body(request, RotateSecret, optional=True)
        return common.json_response(await ops.rotate_secret(client_id, body.grace_seconds))

    def routes(self) -> list[Route]:
        return common.routes_by_method(
            {
                self.path: {"GET": self.list_clients, "POST": self.create_client},
                **self.record_table(),
                self.one + "/rotate-secret": {"POST": self.rotate_secret},
                self.one + "/disable": {"POST": self.state_change("disable")},
                self.one + "/enable": {"POST": self.state_change("enable")},
            }
        )


def client_routes(runtime: AdminPlane) -> list[Route]:
    """The client endpoints for ``runtime``."""
    return ClientEndpoints(runtime).routes()
