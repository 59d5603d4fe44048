"""The ``edge`` section of a native route: the checks before authentication.

Every edge feature is native. OpenTelemetry
tracing is table-wide (``edge.tracing``: the sample ratio, or ``null`` when
off; ``native/src/tracing.rs``). What it serves: the route's body size limit
(``max_body``, default ``request_limits.max_body``), its CORS policy (``cors``,
:mod:`bastion.gateway.compile.cors`), its IP allow / deny networks (``ip``:
``{"allow": [...], "deny": [...]}`` as ``ipaddress`` prints them, or ``null``;
``native/src/ip_rules.rs``) and its WebSocket limits (``websocket``:
``{"max_message_size", "idle_timeout", "max_duration"}``, or ``null`` when the
route takes no upgrade; ``native/src/websocket.rs``).
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.compile import cors
from bastion.gateway.ip_rules import IpRules
from bastion.settings import RouteSettings, Settings

__all__ = ["section", "table_section"]


def section(route: RouteSettings, settings: Settings) -> dict[str, Any]:
    """The edge section of ``route``."""
    max_body = route.max_body if route.max_body is not None else settings.request_limits.max_body
    return {
        "max_body": int(max_body),
        "cors": cors.section(route),
        "ip": _ip(route),
        "websocket": _websocket(route),
    }


def _websocket(route: RouteSettings) -> dict[str, Any] | None:
    """The route's WebSocket limits, or None when it takes no upgrade."""
    ws = route.websocket
    if not ws.enabled:
        return None
    return {
        "max_message_size": int(ws.max_message_size),
        "idle_timeout": float(ws.idle_timeout),
        "max_duration": float(ws.max_duration),
    }


def _ip(route: RouteSettings) -> dict[str, list[str]] | None:
    """The route's IP rules as :class:`~bastion.gateway.ip_rules.IpRules` compiles them."""
    if route.ip is None or not (route.ip.allow or route.ip.deny):
        return None
    rules = IpRules.of(route.ip.allow, route.ip.deny)
    return {
        "allow": [str(network) for network in rules.allow],
        "deny": [str(network) for network in rules.deny],
    }


def table_section(settings: Settings) -> dict[str, Any]:
    """What every route shares: header limits, the trusted proxies, tracing."""
    limits = settings.request_limits
    tracing = settings.tracing
    return {
        "max_headers": int(limits.max_headers),
        "max_header_bytes": int(limits.max_header_bytes),
        "trusted_proxies": [str(network) for network in settings.trusted_proxies],
        "tracing": {"sample_ratio": float(tracing.sample_ratio)} if tracing.enabled else None,
    }
