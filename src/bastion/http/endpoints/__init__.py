"""bastion's own HTTP endpoints (Starlette; off the gateway hot path).

:func:`standard_routes` is the one list of endpoint groups a serving bastion
mounts; :func:`create_full_app` assembles the ASGI app with all of them. The
health probes are not among the groups: every app :func:`bastion.http.app.create_app`
builds serves them, so they live beside it (:mod:`bastion.http.health`), and
this package sits above the app it fills.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from bastion.http.app import create_app
from bastion.http.endpoints.account import account_routes
from bastion.http.endpoints.admin import admin_routes
from bastion.http.endpoints.authorize import authorize_routes
from bastion.http.endpoints.forward_auth import forward_auth_routes
from bastion.http.endpoints.leaks import leak_routes
from bastion.http.endpoints.login import login_routes
from bastion.http.endpoints.logout import logout_routes
from bastion.http.endpoints.metrics import metrics_routes
from bastion.http.endpoints.oauth import oauth_routes
from bastion.http.endpoints.oidc import oidc_routes
from bastion.http.health import READINESS_TIMEOUT, health_routes
from bastion.http.runtime import ControlPlane
from bastion.http.types import ASGIApp

__all__ = ["READINESS_TIMEOUT", "create_full_app", "health_routes", "standard_routes"]


def standard_routes(runtime: ControlPlane) -> list[BaseRoute]:
    """Every endpoint group beyond health: the authorization server (OAuth and OpenID
    Connect: discovery, userinfo), the admin API (unless
    ``admin.listen`` serves it on a listener of its own), then
    the API key leak-report endpoint (only when a leak-report secret is configured), then
    ``/metrics`` (only when metrics are on and not on a listener of their own), then the
    forward-auth decision endpoint, then the browser login (``/login``, ``/logout``), the
    account page (``/account``), the authorization endpoint with its consent page and the
    RP-initiated logout (``/oauth2/logout``)."""
    admin = runtime.settings.admin
    return [
        *oauth_routes(runtime),
        *oidc_routes(runtime),
        *(admin_routes(runtime) if admin.listen is None else ()),
        *leak_routes(runtime),
        *metrics_routes(runtime),
        *forward_auth_routes(runtime),
        *login_routes(runtime),
        *account_routes(runtime),
        *authorize_routes(runtime),
        *logout_routes(runtime),
    ]


def create_full_app(runtime: ControlPlane) -> ASGIApp:
    """The ASGI app a serving bastion runs: gateway, health, OAuth and admin endpoints."""
    return create_app(runtime, routes=standard_routes(runtime))
