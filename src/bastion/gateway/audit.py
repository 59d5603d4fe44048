"""The gateway's ``audit`` step: one event per denial, a counter increment per allowed request.

Called by :meth:`bastion.gateway.pipeline.Gateway.handle` (not a row of the
step table: it runs for denials, which leave the table early). Both functions
are synchronous and do no I/O — the auditor queues, the writer writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.audit.events import Auditor, EventTypes
from bastion.errors import BastionError
from bastion.gateway.forwarded import client_ip

if TYPE_CHECKING:
    from bastion.gateway.pipeline import Exchange

__all__ = ["count_allowed", "record_denial"]

# Where the request-id middleware leaves the id (bastion.http.middleware.request_id).
_REQUEST_ID_SCOPE_KEY = "bastion.request_id"
_PATH_LIMIT = 256


def _user_agent(headers: object) -> str | None:
    for name, value in headers or ():  # type: ignore[attr-defined]
        if name.lower() == b"user-agent":
            return str(value.decode("latin-1"))
    return None


def record_denial(auditor: Auditor, ex: Exchange, step: str, error: BastionError) -> None:
    """Record ``gateway.denied`` for ``error`` raised by ``step`` (reason: the error's code).

    Outcome ``denied`` for a 4xx, ``failure`` for a 5xx (e.g. the upstream
    is unreachable). A forward-auth decision (``/auth/verify``) carries
    ``data.door = "forward_auth"``. The identity's key id / client id / subject are included
    when the ``authenticate`` step had established it.
    """
    scope = ex.scope
    identity = ex.identity
    route = ex.route
    client_id = None
    if identity is not None and identity.claims:
        value = identity.claims.get("client_id")
        client_id = value if isinstance(value, str) else None
    auditor.record(
        EventTypes.GATEWAY_DENIED,
        "denied" if error.status < 500 else "failure",
        reason=error.code,
        request_id=scope.get(_REQUEST_ID_SCOPE_KEY),
        ip=client_ip(scope, ex.gateway.trusted_proxies),
        user_agent=_user_agent(scope.get("headers")),
        subject=identity.subject if identity is not None else None,
        client_id=client_id,
        key_id=identity.key_id if identity is not None else None,
        route=route.name if route is not None else None,
        data=_data(ex, step, error),
    )


def _data(ex: Exchange, step: str, error: BastionError) -> dict[str, object]:
    data: dict[str, object] = {
        "status": error.status,
        "step": step,
        "method": ex.method,
        "path": (ex.path or str(ex.scope.get("path", "")))[:_PATH_LIMIT],
    }
    if ex.door != "gateway":
        data["door"] = ex.door  # "forward_auth" (decided for another proxy) or "websocket"
    return data


def count_allowed(auditor: Auditor, ex: Exchange) -> None:
    """Count an allowed request in the per-minute traffic aggregate (route and principal)."""
    route = ex.route
    if route is None:
        return
    identity = ex.identity
    traffic = auditor.traffic
    if identity is None or identity.subject is None:
        traffic.hit(route.name, "anonymous", None)
    elif identity.key_id is not None:
        traffic.hit(route.name, "key", identity.key_id)
    else:
        client_id = identity.claims.get("client_id") if identity.claims else None
        if isinstance(client_id, str):
            traffic.hit(route.name, "client", client_id)
        else:
            traffic.hit(route.name, "subject", identity.subject)
