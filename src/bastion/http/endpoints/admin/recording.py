"""Recording admin API changes on the runtime's audit bus.

Every successful change through the admin API becomes one lifecycle event
(:mod:`bastion.audit.lifecycle`) on ``runtime.auditor``, with the admin token's
subject as actor, the request id and the client address (``X-Forwarded-For``
believed only from ``trusted_proxies``, as on the gateway).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from bastion.audit.events import Event
from bastion.gateway.forwarded import request_client_ip
from bastion.http.middleware.request_id import get_request_id
from bastion.http.runtime import AdminPlane

__all__ = ["AdminAudit"]


class AdminAudit:
    """Builds the request context of lifecycle events and emits them on ``runtime.auditor``.

    A runtime without an auditor (some test stand-ins) records nothing.
    """

    def __init__(self, runtime: AdminPlane) -> None:
        self._runtime = runtime

    def record(self, request: Request, build: Callable[..., Event], *args: Any, **kw: Any) -> None:
        """Emit ``build(*args, request_id=…, ip=…, **kw)`` on the runtime's auditor."""
        auditor = self._runtime.auditor
        if auditor is None:
            return
        request_id = get_request_id(request.scope)
        event = build(
            *args,
            request_id=None if request_id == "-" else request_id,
            ip=request_client_ip(request.scope),
            **kw,
        )
        auditor.emit(event)
