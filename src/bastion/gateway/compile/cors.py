"""The ``edge.cors`` part of a native route: its CORS policy, as the native ``cors`` step reads it.

The policy is the Python step's own (:func:`bastion.gateway.cors.compile_cors`),
so both planes agree by construction: ``{"origins", "methods", "headers",
"allow_methods", "allow_headers", "expose_headers", "credentials", "max_age"}``
— the exact origins, the methods a preflight may ask for (upper-case), the
request headers a page may send (lower-case), and the response header values
already joined as Python sends them. ``None`` for a route without ``cors``.
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.cors import compile_cors
from bastion.gateway.matcher import compile_route
from bastion.settings import RouteSettings

__all__ = ["section"]


def section(route: RouteSettings) -> dict[str, Any] | None:
    """The CORS policy of ``route`` for the native core, or ``None`` without ``cors``."""
    if route.cors is None:
        return None
    policy = compile_cors(compile_route(route))
    if policy is None:
        return None
    return {
        "origins": sorted(origin.decode("ascii") for origin in policy.origins),
        "methods": sorted(policy.methods),
        "headers": sorted(policy.headers),
        "allow_methods": policy.allow_methods.decode("ascii"),
        "allow_headers": policy.allow_headers.decode("ascii"),
        "expose_headers": policy.expose_headers.decode("ascii"),
        "credentials": policy.credentials,
        "max_age": policy.max_age.decode("ascii"),
    }
