"""Noticing that the shared limiter went down and came back: one event, log line, metric each.

The limit step reports every failed and every successful shared-limiter call;
only the *transitions* are recorded (an outage under load would otherwise
produce one event per request): ``ratelimit.backend_down`` (outcome
``failure``) on the first failure, ``ratelimit.backend_up`` (``success``,
with the outage's length) on the first success after it. The Prometheus
gauge ``bastion_ratelimit_backend_up`` is 0 during an outage, and
``bastion_ratelimit_backend_errors_total`` counts every failed call.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from prometheus_client import Counter, Gauge

from bastion import _native
from bastion.audit.events import Auditor, EventTypes

__all__ = ["BACKEND_ERRORS", "BACKEND_UP", "BackendHealth"]

log = logging.getLogger("bastion.ratelimit")

BACKEND_UP: Final = Gauge(
    "bastion_ratelimit_backend_up", "1 while the shared rate limiter (Redis) answers, else 0"
)
BACKEND_ERRORS: Final = Counter(
    "bastion_ratelimit_backend_errors",
    "Rate limiter calls that failed because the shared state (Redis) was unreachable",
)
BACKEND_UP.set(1)


class BackendHealth:
    """Tracks whether the shared limiter answers; records the transitions (never raises)."""

    def __init__(self, auditor: Auditor | None = None, *, node_id: str = "") -> None:
        self.auditor = auditor
        self.node_id = node_id
        self.down_since: float | None = None

    @property
    def up(self) -> bool:
        """Whether the last call to the shared limiter succeeded."""
        return self.down_since is None

    def failed(self, error: BaseException, *, fail_closed: bool) -> None:
        """A call failed: on the first failure, log, audit and flip the gauge."""
        BACKEND_ERRORS.inc()
        if self.down_since is not None:
            return
        self._down(error, fail_closed=fail_closed)

    def _down(self, error: BaseException | str, *, fail_closed: bool) -> None:
        self.down_since = time.monotonic()
        BACKEND_UP.set(0)
        _native.limiter_down(True)  # the native path reports the recovery it sees
        mode = "closed (503)" if fail_closed else "open (local share)"
        log.warning("rate limiter backend down, limits fail %s: %s", mode, error)
        if self.auditor is not None:
            self.auditor.record(
                EventTypes.RATELIMIT_BACKEND_DOWN,
                "failure",
                reason="shared_state_unavailable",
                data={"node_id": self.node_id, "error": str(error)[:200]},
            )

    def native_report(self, transitions: list[tuple[str, str, bool]], errors: int) -> None:
        """Record what the native limit step saw (``_native.limiter_drain``): its failed
        calls counted, its transitions as this process's own (each logged once)."""
        if errors:
            BACKEND_ERRORS.inc(errors)
        for kind, error, fail_closed in transitions:
            if kind == "down":
                if self.down_since is None:
                    self._down(error, fail_closed=fail_closed)
            elif self.down_since is not None:
                self.succeeded()

    def succeeded(self) -> None:
        """A call succeeded: after an outage, log, audit and flip the gauge back."""
        since = self.down_since
        if since is None:
            if _native.limiter_is_down():
                # The native path saw a failure this process's limiter never did.
                _native.limiter_down(False)
            return
        self.down_since = None
        BACKEND_UP.set(1)
        _native.limiter_down(False)
        seconds = round(time.monotonic() - since, 3)
        log.warning("rate limiter backend up again after %.1f s", seconds)
        if self.auditor is not None:
            self.auditor.record(
                EventTypes.RATELIMIT_BACKEND_UP,
                "success",
                reason="recovered",
                data={"node_id": self.node_id, "down_seconds": seconds},
            )
