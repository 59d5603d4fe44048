"""bastion's own HTTP endpoints (Starlette; off the gateway hot path)."""

from bastion.http.endpoints.health import READINESS_TIMEOUT, health_routes

__all__ = ["READINESS_TIMEOUT", "health_routes"]
