"""Alerts tighten limits: what a detector flags is rate-limited harder for a while (issue 6, 5b).

:func:`tighten_on_alerts` subscribes to the audit bus and, for every
``alert.raised`` event of an attack-like type (:data:`TIGHTENING_ALERTS`), flags the
address, API key, subject or client it names in the gateway's
:class:`~bastion.ratelimit.risk.RiskRegistry`:
their limits are divided by ``factor`` until ``duration`` has passed. Leaked
keys are not flagged (they are already revoked), nor are informational alerts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from bastion.audit.events import Auditor, Event, EventTypes
from bastion.ratelimit.risk import RiskKind, RiskRegistry

__all__ = ["TIGHTENING_ALERTS", "tighten_on_alerts"]

# The alert types that mean "this party is attacking or misbehaving". Not denial spikes:
# a burst of 429s is the limiter already doing its job (tightening would make the limits
# inexact for a client that merely retries too fast), and 401/403 bursts are covered per
# address and account by the failure detectors.
TIGHTENING_ALERTS: Final = frozenset(
    {
        "brute_force",
        "ip_failures",
        "credential_stuffing",
        "new_network",
        "refresh_token_reuse",
        "code_reuse",
    }
)


def tighten_on_alerts(
    auditor: Auditor,
    risk: RiskRegistry,
    *,
    factor: int,
    duration: float,
    clock: Callable[[], float] = time.time,
) -> Callable[[], None]:
    """Flag what attack alerts name in ``risk``; returns the unsubscribe function."""

    def listener(event: Event) -> None:
        if event.type != EventTypes.ALERT or event.reason not in TIGHTENING_ALERTS:
            return
        until = clock() + duration
        named: tuple[tuple[RiskKind, str | None], ...] = (
            ("ip", event.ip),
            ("key", event.key_id),
            ("subject", event.subject),
            ("client", event.client_id),
        )
        for kind, value in named:
            if value:
                risk.flag(kind, value, factor, until)

    return auditor.subscribe(listener)
