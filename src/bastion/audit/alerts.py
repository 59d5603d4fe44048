"""Alerts: what a detector raises, and the manager that deduplicates, records and delivers them.

A detector (:mod:`bastion.audit.detectors`) looks at one audit event at a time
and may return an :class:`Alert`. The :class:`AlertManager` is the auditor
listener that runs every detector over every event and, for each alert:

1. **deduplicates** it: alerts with the same ``(type, dedup_key)`` within
   ``dedup_window`` seconds of the first one delivered are folded into it
   (``count`` and ``last_seen`` grow; nothing new is sent) — an attack that
   goes on for an hour raises one alert per window, not one per request;
2. **records** an ``alert.raised`` audit event (so the alert is in the
   tamper-evident audit log like every other security decision);
3. **logs** one warning line (``bastion.alerts``);
4. **delivers** it to the configured webhooks (``deliver`` callback, the
   :class:`~bastion.audit.webhook.WebhookSink`), which never blocks.

The manager runs in the caller's task as an auditor listener: every step is
O(1) and nothing here does I/O other than the one log line.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, get_args

from bastion.audit.events import Auditor, Event, EventTypes
from bastion.storage.models import new_id

__all__ = [
    "SEVERITIES",
    "Alert",
    "AlertManager",
    "Clock",
    "Detector",
    "Severity",
]

log = logging.getLogger("bastion.alerts")

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)

#: Seconds since the epoch; detectors and the manager take one so tests fix the time.
Clock = Callable[[], float]


@dataclass(slots=True)
class Alert:
    """One alert: what happened, how bad, about whom, since when and how often.

    ``dedup_key`` names what the alert is about within its ``type`` (the
    account, the IP, the route …); the manager folds alerts with the same
    ``(type, dedup_key)`` together. ``subject``, ``client_id``, ``ip``,
    ``route`` and ``key_id`` are the identifiers involved (never a secret).
    """

    type: str
    severity: Severity
    summary: str
    dedup_key: str
    first_seen: float
    last_seen: float
    count: int = 1
    subject: str | None = None
    client_id: str | None = None
    ip: str | None = None
    route: str | None = None
    key_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_id)

    def to_json(self) -> dict[str, Any]:
        """The alert as the JSON object webhooks and the audit log carry."""
        return {
            "id": self.id,
            "type": self.type,
            "severity": self.severity,
            "summary": self.summary,
            "dedup_key": self.dedup_key,
            "subject": self.subject,
            "client_id": self.client_id,
            "ip": self.ip,
            "route": self.route,
            "key_id": self.key_id,
            "first_seen": _rfc3339(self.first_seen),
            "last_seen": _rfc3339(self.last_seen),
            "count": self.count,
            "data": dict(self.data),
        }


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class Detector(Protocol):
    """The one interface of every detector: look at an event, maybe return an alert.

    ``observe`` is called synchronously for every audit event; it must be
    O(1) amortised, keep bounded memory, and not raise.
    """

    name: str

    def observe(self, event: Event) -> Alert | None:
        """The alert ``event`` completes, or ``None``."""
        ...


class AlertManager:
    """Runs the detectors over the audit stream; deduplicates, records, logs and delivers alerts.

    ``deliver`` is called with every alert that survives deduplication (the
    webhook sink's non-blocking ``deliver_alert``). ``recent`` keeps the last
    ``keep`` delivered alerts for operators and tests. At most ``max_keys``
    dedup entries are kept (least recently raised evicted first).
    """

    def __init__(
        self,
        auditor: Auditor,
        detectors: Iterable[Detector],
        *,
        dedup_window: float = 900.0,
        deliver: Callable[[Alert], None] | None = None,
        clock: Clock = time.time,
        max_keys: int = 10_000,
        keep: int = 100,
    ) -> None:
        self.auditor = auditor
        self.detectors = tuple(detectors)
        self.dedup_window = dedup_window
        self.deliver = deliver
        self.clock = clock
        self.max_keys = max_keys
        # (type, dedup_key) -> (when it was delivered, the alert later ones fold into)
        self._open: OrderedDict[tuple[str, str], tuple[float, Alert]] = OrderedDict()
        self.recent: deque[Alert] = deque(maxlen=keep)
        self.raised = 0
        self.suppressed = 0
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self) -> None:
        """Subscribe to the auditor (idempotent)."""
        if self._unsubscribe is None:
            self._unsubscribe = self.auditor.subscribe(self.observe)

    def detach(self) -> None:
        """Unsubscribe from the auditor."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def observe(self, event: Event) -> None:
        """The auditor listener: run every detector over ``event``, raise what they find."""
        if event.type == EventTypes.ALERT:
            return  # our own records: detectors never look at alerts (no feedback loops)
        for detector in self.detectors:
            try:
                alert = detector.observe(event)
            except Exception:  # one broken detector must not silence the others
                log.exception("detector %s failed", detector.name)
                continue
            if alert is not None:
                self.raise_alert(alert)

    def raise_alert(self, alert: Alert) -> Alert | None:
        """Deduplicate ``alert``; record, log and deliver it when new.

        Returns the alert delivered, or ``None`` when it was folded into an
        open one of the same ``(type, dedup_key)``.
        """
        now = self.clock()
        key = (alert.type, alert.dedup_key)
        entry = self._open.get(key)
        if entry is not None and now - entry[0] < self.dedup_window:
            current = entry[1]
            current.count += alert.count
            current.last_seen = max(current.last_seen, alert.last_seen)
            self._open.move_to_end(key)
            self.suppressed += 1
            return None
        self._open[key] = (now, alert)
        self._open.move_to_end(key)
        while len(self._open) > self.max_keys:
            self._open.popitem(last=False)
        self.raised += 1
        self.recent.append(alert)
        log.warning(
            "alert %s (%s): %s",
            alert.type,
            alert.severity,
            alert.summary,
            extra={"alert_id": alert.id, "alert_type": alert.type, "severity": alert.severity},
        )
        self.auditor.record(
            EventTypes.ALERT,
            "info",
            reason=alert.type,
            ip=alert.ip,
            subject=alert.subject,
            client_id=alert.client_id,
            key_id=alert.key_id,
            route=alert.route,
            data=alert.to_json(),
        )
        if self.deliver is not None:
            try:
                self.deliver(alert)
            except Exception:  # delivery is best effort and must never break the request
                log.exception("alert delivery failed to enqueue")
        return alert
