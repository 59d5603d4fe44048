"""The ``edge`` section of a native route: the checks before authentication.

The native core serves a route's edge only when it has nothing the native
steps do not implement yet: CORS, IP allow/deny rules, WebSocket upgrades,
mutual TLS and OpenTelemetry tracing
leave the route to the Python pipeline (:class:`Unsupported`, with the
reason ``bastion routes list`` shows). What it does serve: the route's body
size limit (``max_body``, default ``request_limits.max_body``).
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.compile.common import Unsupported
from bastion.settings.models import RouteSettings, Settings

__all__ = ["section", "table_section"]


def section(route: RouteSettings, settings: Settings) -> dict[str, Any] | Unsupported:
    """The edge section of ``route``, or the first feature that keeps it in Python."""
    reasons = []
    if route.cors is not None:
        reasons.append("cors")
    if route.ip is not None and (route.ip.allow or route.ip.deny):
        reasons.append("ip rules")
    if route.websocket.enabled:
        reasons.append("websocket")
    if "mtls" in route.auth:
        reasons.append("mtls")
    if settings.tracing.enabled:
        reasons.append("tracing")
    if reasons:
        return Unsupported("not native yet: " + ", ".join(reasons))
    max_body = route.max_body if route.max_body is not None else settings.request_limits.max_body
    return {"max_body": int(max_body)}


def table_section(settings: Settings) -> dict[str, Any]:
    """What every route shares: header limits and the trusted proxies."""
    limits = settings.request_limits
    return {
        "max_headers": int(limits.max_headers),
        "max_header_bytes": int(limits.max_header_bytes),
        "trusted_proxies": [str(network) for network in settings.trusted_proxies],
    }
