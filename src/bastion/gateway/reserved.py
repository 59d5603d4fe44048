"""The paths bastion owns itself: never a gateway route's, never proxied.

The one list (:data:`RESERVED_PREFIXES`) that the HTTP app dispatches by and the route table
compiler refuses routes under. It lives with the gateway (below the entry points) so the
compiler need not import the HTTP app.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.gateway.paths import resolve_dot_segments

__all__ = ["RESERVED_PREFIXES", "is_reserved", "reserved_exact"]

RESERVED_PREFIXES: tuple[str, ...] = (
    "/healthz",  # liveness probe
    "/readyz",  # readiness probe
    "/.well-known",  # OIDC discovery, RFC 8414 metadata, JWKS
    "/oauth2",  # authorization server endpoints (authorize, token, introspect, revoke, ...)
    "/login",  # interaction UI: login
    "/logout",  # interaction UI: logout (a confirmation form, then the POST)
    "/mfa",  # interaction UI: second factor
    "/consent",  # interaction UI: consent
    "/account",  # self-service account pages
    "/admin",  # admin UI and /admin/api/v1
    "/auth/verify",  # forward-auth endpoint for nginx / Caddy / Traefik
    "/metrics",  # Prometheus metrics
    "/api-keys/leaks",  # API key leak reports from secret scanners (only this exact path)
)
"""Path prefixes bastion owns; the ONE list deciding what never reaches the gateway.

A prefix matches the path itself and everything below it on a segment
boundary (``/admin`` and ``/admin/x``, not ``/administrator``). Unknown paths
under a reserved prefix are 404 problem+json, never proxied. Paths are
compared after collapsing ``//`` and resolving ``.``/``..`` segments
(:mod:`bastion.gateway.paths`, the one home of that rule), so ``//admin`` or
``/x/../admin`` cannot slip past to an upstream.
"""


def _by_first_segment(prefixes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for prefix in prefixes:
        first = prefix[1:].split("/", 1)[0]
        table.setdefault(first, []).append(prefix)
    return {first: tuple(items) for first, items in table.items()}


_FIRST_SEGMENTS = _by_first_segment(RESERVED_PREFIXES)


def reserved_exact(path: str) -> bool:
    end = path.find("/", 1)
    candidates = _FIRST_SEGMENTS.get(path[1:end] if end != -1 else path[1:])
    if candidates is None:
        return False
    for prefix in candidates:
        size = len(prefix)
        if path.startswith(prefix) and (len(path) == size or path[size] == "/"):
            return True
    return False


def is_reserved(path: str) -> bool:
    """Whether ``path`` belongs to bastion itself (see :data:`RESERVED_PREFIXES`)."""
    if reserved_exact(path):
        return True
    return ("//" in path or "/." in path) and reserved_exact(resolve_dot_segments(path))
