"""What the control plane keeps of the gateway while the native core serves it.

The native core decides every gateway request from its table
(:mod:`bastion.gateway.compile`). Python keeps only what that decision asks
of it or shares with it, held here for the process (``Runtime.control``):

- the live compiled routes (what an API key may obtain by token exchange reads them);
- the authenticators whose lookups answer the native core's cache misses
  (:mod:`bastion.gateway.lookups`: ``jwt`` with its trusted issuers, ``mtls``,
  ``introspection``);
- the limiter with its companions: per-key overrides, the shared backend's
  outage bookkeeping, the node count and the risk registry,
  each of which pushes its state into the native core;
- the tracer exporting the native core's spans.

None of it is a request path: nothing here judges or forwards a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bastion.gateway.matcher import CompiledRoute, RouteMatcher
from bastion.observability.tracing import GatewayTracer
from bastion.ratelimit import Limiter, MemoryLimiter
from bastion.ratelimit.keys import KeyLimitOverrides
from bastion.ratelimit.nodes import NodeCount
from bastion.ratelimit.outage import BackendHealth
from bastion.ratelimit.risk import RiskRegistry
from bastion.settings import RouteSettings

__all__ = ["GatewayControl"]


class GatewayControl:
    """The gateway's long-lived control-plane components (see the module docstring).

    Constructing raises :class:`~bastion.gateway.errors.GatewayConfigError`
    for invalid routes. ``authenticators`` maps a method name to its
    authenticator; ``limiter`` is the shared limiter (Redis) or the native
    in-memory store's (``MemoryLimiter(serve_native=True)``). The limiter's
    companions are given here, built once: only ``routes`` changes afterwards
    (:meth:`reload`).
    """

    def __init__(
        self,
        routes: Iterable[RouteSettings],
        *,
        authenticators: Mapping[str, Any],
        limiter: Limiter,
        tracer: GatewayTracer | None = None,
        fallback_limiter: MemoryLimiter | None = None,
        key_overrides: KeyLimitOverrides | None = None,
        limiter_health: BackendHealth | None = None,
        node_count: NodeCount | None = None,
        risk: RiskRegistry | None = None,
    ) -> None:
        self.routes: tuple[CompiledRoute, ...] = RouteMatcher(routes).routes
        self.authenticators = authenticators
        self.limiter = limiter
        self.tracer = tracer
        # Decides the limits that fail open while the shared limiter is unreachable.
        self.fallback_limiter: MemoryLimiter = fallback_limiter or MemoryLimiter()
        # Built by the runtime where the settings ask for them (None: not configured).
        self.key_overrides = key_overrides
        self.limiter_health = limiter_health
        self.node_count = node_count
        self.risk = risk

    def reload(self, routes: Iterable[RouteSettings]) -> None:
        """Swap in the compiled ``routes``; raises GatewayConfigError (nothing changed) for
        an invalid one."""
        self.routes = RouteMatcher(routes).routes
