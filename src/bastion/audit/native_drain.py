"""The native data plane's decisions, drained into the Python audit pipeline.

The native front queues one event per decision in a bounded queue
(``native/src/audit.rs``). :class:`NativeAuditDrain` takes them in batches:

- a **denial** (429, 502, 504 … the native path answers itself) becomes the
  ``gateway.denied`` event the deleted Python pipeline recorded (reason, request id,
  client IP, user agent, identity, route, ``data`` with status / step / method / path / door),
  emitted on the :class:`~bastion.audit.events.Auditor` so detectors, metrics
  and the writer see it like any other;
- **allows** arrive counted per minute, route and principal, and are added to
  the auditor's :class:`~bastion.audit.aggregates.TrafficCounter` (the
  per-minute aggregates, never one row per request).

- the shared limiter's **outage transitions** the native limit step saw go to
  :class:`~bastion.ratelimit.outage.BackendHealth` (its one log line, audit
  event and gauge flip per transition, as for Python's own calls);
- **spans** of sampled requests the native core answered (tracing on) go to
  :meth:`bastion.observability.tracing.GatewayTracer.record_native`, which exports
  them through the OpenTelemetry SDK.

When the native queue was full, allows were dropped before denials; every
drop is counted (``bastion_native_audit_dropped_total``) and reported once
per drain as an ``audit.dropped`` event and, with alerting on, an alert.
:meth:`NativeAuditDrain.drain_all` empties the queue (graceful shutdown,
before the writer's final flush).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any, Final, cast

from bastion import _native
from bastion.audit.aggregates import Principal
from bastion.audit.alerts import AlertManager
from bastion.audit.events import Auditor, Event, EventTypes
from bastion.observability.tracing import GatewayTracer
from bastion.ratelimit.outage import BackendHealth

__all__ = ["DROP_ALERT", "NativeAuditDrain"]

log = logging.getLogger("bastion.audit")

#: The alert type raised when the native audit queue dropped events.
DROP_ALERT: Final = "native_audit_dropped"

_PATH_LIMIT: Final = 256
_BATCH: Final = 4096


class NativeAuditDrain:
    """Moves the native queue's events into ``auditor`` (see the module docstring).

    ``interval`` is the pause between drains when the queue ran dry;
    ``capacity`` (settings ``audit.max_queue``) bounds the native queue;
    ``alerts`` (optional) raises :data:`DROP_ALERT` when events were dropped;
    ``tracer`` (tracing on) exports the native core's span records;
    ``limiter_health`` (a shared limiter) records the outages the native limit
    step saw, as it records Python's own (one log line and event per transition).
    """

    def __init__(
        self,
        auditor: Auditor,
        *,
        alerts: AlertManager | None = None,
        interval: float = 0.1,
        batch: int = _BATCH,
        capacity: int | None = None,
        tracer: GatewayTracer | None = None,
        limiter_health: BackendHealth | None = None,
    ) -> None:
        self.auditor = auditor
        self.limiter_health = limiter_health
        self.alerts = alerts
        self.tracer = tracer
        self._spans_dropped = _native.trace_dropped()
        self.interval = interval
        self.batch = batch
        if capacity is not None:
            _native.audit_set_capacity(capacity)
        # Drops already reported, (allows, denials): the native counters only grow.
        self._reported = _native.audit_dropped()

    def drain_once(self) -> int:
        """Move up to one batch into the auditor; returns how many events it held."""
        denials, allows = _native.audit_drain(self.batch)
        for item in denials:
            self.auditor.emit(_denial_event(item))
        traffic = self.auditor.traffic
        taken = len(denials)
        for minute, route, principal, principal_id, count in allows:
            traffic.add(minute, route, cast(Principal, principal), principal_id, count)
            taken += count
        self._report_drops()
        if self.tracer is not None:
            spans = _native.trace_drain(self.batch)
            self.tracer.record_native(spans)
            taken += len(spans)
            dropped = _native.trace_dropped()
            if dropped > self._spans_dropped:
                log.warning(
                    "tracing: the native span queue dropped %d span(s)",
                    dropped - self._spans_dropped,
                )
                self._spans_dropped = dropped
        for level, logger, message in _native.log_drain(self.batch):
            logging.getLogger(logger).log(level, "%s", message)
        if self.limiter_health is not None:
            self.limiter_health.native_report(*_native.limiter_drain())
        return taken

    def drain_all(self) -> int:
        """Empty the native queue (shutdown); returns how many events it held."""
        total = 0
        while True:
            taken = self.drain_once()
            total += taken
            if taken == 0 or (_native.audit_pending() == 0 and self.tracer is None):
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until ``stop`` is set, then empty the queue (never raises for a bad event)."""
        try:
            while not stop.is_set():
                try:
                    taken = self.drain_once()
                except Exception:  # one malformed event must not stop the audit trail
                    log.exception("audit: draining native decisions failed")
                    taken = 0
                if taken < self.batch:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.interval)
                else:
                    await asyncio.sleep(0)  # a full batch: more is waiting, but let others run
        finally:
            self.drain_all()

    def _report_drops(self) -> None:
        total = _native.audit_dropped()
        allows, denials = total[0] - self._reported[0], total[1] - self._reported[1]
        dropped = allows + denials
        if dropped <= 0:
            return
        self._reported = total
        log.warning("audit: the native queue dropped %d decision event(s)", dropped)
        self.auditor.record(
            EventTypes.DROPPED,
            "failure",
            reason="native_queue_full",
            data={"count": dropped, "source": "native", "allows": allows, "denials": denials},
        )
        if self.alerts is not None:
            from bastion.audit.alerts import Alert

            now = time.time()
            self.alerts.raise_alert(
                Alert(
                    type=DROP_ALERT,
                    severity="high" if denials else "medium",
                    summary=f"the native audit queue dropped {dropped} decision event(s)",
                    dedup_key="native",
                    first_seen=now,
                    last_seen=now,
                    count=dropped,
                    data={"allows": allows, "denials": denials},
                )
            )


def _denial_event(item: dict[str, Any]) -> Event:
    status = int(item["status"])
    data: dict[str, object] = {
        "status": status,
        "step": item["step"],
        "method": item["method"],
        "path": str(item["path"])[:_PATH_LIMIT],
    }
    if item["door"] != "gateway":
        data["door"] = item["door"]
    return Event(
        type=EventTypes.GATEWAY_DENIED,
        outcome="denied" if status < 500 else "failure",
        reason=item["reason"],
        request_id=item["request_id"],
        ip=item["ip"],
        user_agent=item["user_agent"],
        subject=item["subject"],
        client_id=item["client_id"],
        key_id=item["key_id"],
        route=item["route"],
        data=data,
        occurred_at=datetime.fromtimestamp(float(item["timestamp"]), UTC),
    )
