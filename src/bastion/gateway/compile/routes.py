"""The ``match`` section of a native route, and the router's table-wide inputs.

The native router (``native/src/router.rs``) reproduces
:class:`~bastion.gateway.matcher.RouteMatcher` on requests whose target is
already in normal form, so this section carries exactly what the matcher
compiles from a route: the normalised host and prefix, the methods, and what
turns the request path into the upstream path (``strip_prefix``, the upstream
URL's base path). Matching is always native; a route is served by Python only
when another section says so.

:func:`table_section` carries what the router needs about the whole table: the
control plane's own path prefixes (never routed to the gateway) and whether
some route answers CORS preflights (an ``OPTIONS`` request is then matched by
the method it asks for, which only Python reads).
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.errors import BadRequestPathError, GatewayConfigError
from bastion.gateway.matcher import normalize_host, parse_upstream
from bastion.gateway.paths import normalize_path
from bastion.gateway.reserved import RESERVED_PREFIXES
from bastion.settings import RouteSettings, Settings

__all__ = ["section", "table_section"]


def section(route: RouteSettings, settings: Settings) -> dict[str, Any]:
    """The ``match`` section of ``route``; raises :class:`GatewayConfigError` like the matcher."""
    match = route.match
    return {
        "host": normalize_host(match.host) if match.host else None,
        "prefix": _prefix(route.name, match.path),
        "methods": None if match.methods is None else sorted({m.upper() for m in match.methods}),
        "strip_prefix": route.strip_prefix,
        "upstream_base": _upstream_base(route),
    }


def table_section(settings: Settings) -> dict[str, Any]:
    """What the router needs about the whole table (see the module docstring)."""
    return {
        "reserved": list(RESERVED_PREFIXES),
        "preflight": any(route.cors is not None for route in settings.routes),
    }


def _prefix(name: str, path: str) -> str:
    """The route's prefix as :func:`bastion.gateway.matcher.compile_route` computes it."""
    try:
        prefix = normalize_path(path.encode("utf-8"))
    except BadRequestPathError as exc:
        raise GatewayConfigError(
            f"routes[{name}].match.path {path!r} is invalid: {exc.detail}"
        ) from exc
    if prefix != path.rstrip("/") and prefix != path:
        raise GatewayConfigError(
            f"routes[{name}].match.path {path!r} is not in normal form; write {prefix!r}."
        )
    return prefix if prefix == "/" else prefix.rstrip("/")


def _upstream_base(route: RouteSettings) -> str:
    """The base path of the route's first upstream URL (what ``upstream_path`` prepends)."""
    return parse_upstream(route.upstreams[0], route=route.name).base_path
