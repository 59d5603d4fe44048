"""The forward-auth decision endpoint: ``/auth/verify`` for nginx, Caddy and Traefik.

A reverse proxy that is not bastion asks, for each client request, whether to
let it through (nginx ``auth_request``, Caddy ``forward_auth``, Traefik
``forwardAuth``). The native core answers these decisions itself
(``native/src/forward_auth.rs``, documented in ``docs/forward-auth.md``): it
reads the original request from the header family ``forward_auth.headers``
names, believes it only from a ``trusted_proxies`` peer, and judges it with the
gateway's own decision — audited, counted and traced like a request bastion
proxies itself.

A decision request reaches this endpoint only while the native core has no
route table loaded yet, or through a deferral it should not have made: nothing
here may judge it, so it is answered 503 ``gateway_unavailable`` with
``Retry-After: 1`` (the proxy refuses the client request meanwhile: fail closed).
"""

from __future__ import annotations

from starlette.routing import Route

from bastion.http.errors import GatewayUnavailableError
from bastion.http.runtime import ControlPlane
from bastion.http.types import Receive, Scope, Send

__all__ = ["FORWARD_AUTH_PATH", "ForwardAuthEndpoint", "forward_auth_routes"]

FORWARD_AUTH_PATH = "/auth/verify"


class ForwardAuthEndpoint:
    """The ASGI endpoint at :data:`FORWARD_AUTH_PATH` (any method): always raises
    :class:`~bastion.http.errors.GatewayUnavailableError` (see the module docstring)."""

    def __init__(self, runtime: ControlPlane) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise GatewayUnavailableError(
            "Forward-auth decisions are not being served yet; retry in a moment."
        )


def forward_auth_routes(runtime: ControlPlane) -> list[Route]:
    """The forward-auth decision route (every method: proxies use GET, HEAD or the original)."""
    return [Route(FORWARD_AUTH_PATH, ForwardAuthEndpoint(runtime))]
