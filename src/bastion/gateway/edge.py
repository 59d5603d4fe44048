"""The edge policies of every route, compiled once: CORS, IP rules, size limits.

One table on the :class:`~bastion.gateway.pipeline.Gateway` (``gateway.edge``)
that the ``framing``, ``ip``, ``cors`` and ``body`` steps read per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.gateway.cors import CorsPolicy, compile_cors
from bastion.gateway.errors import GatewayConfigError
from bastion.gateway.ip_rules import IpRules, compile_ip_rules
from bastion.gateway.matcher import CompiledRoute

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_HEADERS",
    "DEFAULT_MAX_HEADER_BYTES",
    "EdgePolicies",
    "compile_edge",
]

DEFAULT_MAX_BODY = 10 * 1000**2
DEFAULT_MAX_HEADER_BYTES = 32 * 1024
DEFAULT_MAX_HEADERS = 100


@dataclass(frozen=True, slots=True)
class EdgePolicies:
    """Per-route CORS policies, IP rules and body limits, plus the global request limits."""

    cors: Mapping[str, CorsPolicy] = field(default_factory=dict)
    ip: Mapping[str, IpRules] = field(default_factory=dict)
    max_body: Mapping[str, int] = field(default_factory=dict)
    default_max_body: int = DEFAULT_MAX_BODY
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS

    @property
    def largest_body(self) -> int:
        """The largest body any route accepts."""
        return max([self.default_max_body, *self.max_body.values()])


def compile_edge(routes: Iterable[CompiledRoute], request_limits: Any = None) -> EdgePolicies:
    """Compile the edge settings of ``routes``; ``request_limits`` is a
    ``bastion.settings.RequestLimitSettings`` (or anything with its attributes; None: defaults).

    Raises :class:`GatewayConfigError` naming the route for an invalid entry.
    """
    cors: dict[str, CorsPolicy] = {}
    ip: dict[str, IpRules] = {}
    max_body: dict[str, int] = {}
    for route in routes:
        policy = compile_cors(route)
        if policy is not None:
            cors[route.name] = policy
        try:
            rules = compile_ip_rules(route)
        except ValueError as exc:
            raise GatewayConfigError(f"routes[{route.name}].ip: {exc}") from None
        if rules is not None:
            ip[route.name] = rules
        limit = getattr(route.settings, "max_body", None)
        if limit is not None:
            if int(limit) < 1:
                raise GatewayConfigError(f"routes[{route.name}].max_body must be positive.")
            max_body[route.name] = int(limit)
    return EdgePolicies(
        cors=cors,
        ip=ip,
        max_body=max_body,
        default_max_body=int(getattr(request_limits, "max_body", DEFAULT_MAX_BODY)),
        max_header_bytes=int(getattr(request_limits, "max_header_bytes", DEFAULT_MAX_HEADER_BYTES)),
        max_headers=int(getattr(request_limits, "max_headers", DEFAULT_MAX_HEADERS)),
    )
