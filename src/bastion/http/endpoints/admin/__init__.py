"""The admin API (``/admin/api/v1``): OAuth clients and API keys, with an OpenAPI 3.1 document.

:func:`admin_routes` returns the Starlette routes; pass them to
``create_app(runtime, routes=admin_routes(runtime))``. Every operation needs a
bastion access token for the audience ``{issuer}/admin/api`` (see
:mod:`bastion.http.endpoints.admin.auth`); the OpenAPI document is public.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.http.endpoints.admin.audit import AUDIT_PATH, audit_routes
from bastion.http.endpoints.admin.auth import (
    ADMIN_AUDIENCE_PATH,
    ADMIN_READ_SCOPE,
    ADMIN_SCOPE,
    admin_audience,
    authenticate_admin,
)
from bastion.http.endpoints.admin.clients import ADMIN_API_PREFIX, MAX_BODY_BYTES, client_routes
from bastion.http.endpoints.admin.errors import (
    AdminAPIError,
    AdminAuthUnavailableError,
    AdminInvalidTokenError,
    AdminMissingTokenError,
    InsufficientScopeError,
    InvalidRequestBodyError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from bastion.http.endpoints.admin.keys import KEYS_PATH, key_routes
from bastion.http.endpoints.admin.openapi import OPENAPI_PATH, OPERATIONS, openapi_document

__all__ = [
    "ADMIN_API_PREFIX",
    "ADMIN_AUDIENCE_PATH",
    "ADMIN_READ_SCOPE",
    "ADMIN_SCOPE",
    "AUDIT_PATH",
    "KEYS_PATH",
    "MAX_BODY_BYTES",
    "OPENAPI_PATH",
    "OPERATIONS",
    "AdminAPIError",
    "AdminAuthUnavailableError",
    "AdminInvalidTokenError",
    "AdminMissingTokenError",
    "InsufficientScopeError",
    "InvalidRequestBodyError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "admin_audience",
    "admin_routes",
    "authenticate_admin",
    "openapi_document",
]


def admin_routes(runtime: Any) -> list[BaseRoute]:
    """Every admin API route for ``runtime``.

    ``runtime`` needs ``db``, ``shared``, ``settings`` (``issuer_url``, ``tokens``)
    and ``access_tokens`` (``verify(token, audience=...)`` returning the claims or
    raising :class:`bastion.crypto.InvalidTokenError`); a ``clients``
    :class:`~bastion.oauth.clients.ClientService` and an ``api_keys``
    :class:`~bastion.apikeys.ApiKeyService` are used when present.
    """
    body = orjson.dumps(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(
            body,
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    return [
        Route(OPENAPI_PATH, openapi, methods=["GET"], name="admin_openapi"),
        *client_routes(runtime),
        *key_routes(runtime),
        *audit_routes(runtime),
    ]
