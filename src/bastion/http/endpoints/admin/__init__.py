"""The admin API (``/admin/api/v1``): clients, API keys, users, with an OpenAPI 3.1 document.

:func:`admin_routes` returns the Starlette routes; pass them to
``create_app(runtime, routes=admin_routes(runtime))``. Every operation needs a
bastion access token for the audience ``{issuer}/admin/api`` (see
:mod:`bastion.http.endpoints.admin.auth`); the OpenAPI document is public.

With ``admin.allow_from`` set, every admin route (the OpenAPI document too) first
checks the client's address — resolved once per request by the one rule,
:func:`bastion.gateway.forwarded.client_ip`, honouring ``trusted_proxies`` —
and answers 403 ``admin_ip_forbidden`` outside those networks. With
``admin.listen`` the routes are served only on that listener
(:func:`admin_listener_app`); the main port answers 404 under ``/admin/api``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.gateway.forwarded import request_client_ip
from bastion.gateway.ip_rules import IpNotAllowedError, IpRules
from bastion.http.app import create_app
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
    AdminAddressForbiddenError,
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
from bastion.http.endpoints.admin.users import user_routes
from bastion.http.runtime import AdminPlane, ControlPlane
from bastion.http.types import ASGIApp, Receive, Scope, Send

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
    "AdminAddressForbiddenError",
    "AdminAuthUnavailableError",
    "AdminInvalidTokenError",
    "AdminMissingTokenError",
    "InsufficientScopeError",
    "InvalidRequestBodyError",
    "PayloadTooLargeError",
    "UnsupportedMediaTypeError",
    "admin_audience",
    "admin_listener_app",
    "admin_routes",
    "authenticate_admin",
    "openapi_document",
]


log = logging.getLogger("bastion.http.admin")


def _address_guard(runtime: AdminPlane) -> Callable[[ASGIApp], ASGIApp] | None:
    """What puts an app behind the ``admin.allow_from`` check (``None`` when it is empty).

    Membership is the gateway's one rule (:class:`~bastion.gateway.ip_rules.IpRules`:
    IPv4-mapped addresses judged as IPv4, an unparsable address refused).
    """
    if not runtime.settings.admin.allow_from:
        return None
    rules = IpRules.of(allow=runtime.settings.admin.allow_from)

    def wrap(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            address = request_client_ip(scope)
            try:
                rules.check(address)
            except IpNotAllowedError:
                log.info("admin API refused for %s: not in admin.allow_from", address)
                raise AdminAddressForbiddenError(
                    "The admin API is not served to this address (admin.allow_from)."
                ) from None
            await app(scope, receive, send)

        return guarded

    return wrap


def admin_routes(runtime: AdminPlane) -> list[BaseRoute]:
    """Every admin API route for ``runtime`` (its ``clients`` and ``api_keys`` services are
    used when it has them, else ones over its stores; without ``access_tokens`` every
    operation answers 503 ``admin_auth_unavailable``)."""
    body = orjson.dumps(openapi_document())

    async def openapi(request: Request) -> Response:
        return Response(
            body,
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    routes: list[BaseRoute] = [
        Route(OPENAPI_PATH, openapi, methods=["GET"], name="admin_openapi"),
        *client_routes(runtime),
        *key_routes(runtime),
        *audit_routes(runtime),
        *user_routes(runtime),
    ]
    guard = _address_guard(runtime)
    if guard is not None:
        for route in routes:
            # Route.handle checks the method (405), then calls .app: the guard runs for
            # every admin request, before any token is looked at.
            if isinstance(route, Route):
                route.app = guard(route.app)
    return routes


def admin_listener_app(runtime: ControlPlane) -> ASGIApp:
    """The ASGI app of the admin listener (``admin.listen``): the admin API and the health
    probes, with bastion's middleware; every other path is 404 problem+json."""
    return create_app(runtime, routes=admin_routes(runtime), gateway=False)
