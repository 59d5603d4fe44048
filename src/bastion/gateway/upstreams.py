"""A route's upstream targets: round-robin choice and passive health checks.

Rules (pinned by ``tests/gateway/test_upstreams.py``):

- targets are tried round-robin; an *ejected* target is skipped;
- a target is ejected after ``failures`` consecutive connection failures
  (refused, reset, connect timeout, TLS handshake failure — never for an HTTP
  status: a 5xx is the application's answer, and ejecting on it would let one
  bad request cascade into an outage) for ``cooldown`` seconds;
- when the cool-down is over the target is *half-open*: exactly one request
  (the probe) may try it; success restores it, failure ejects it again for
  twice the previous cool-down, capped at ``max_cooldown``;
- with every target ejected :meth:`Targets.choose` returns ``None`` and the
  proxy answers 503 ``upstream_unavailable`` at once, without connecting.

Health is kept per target address (:attr:`Upstream.key`) in a :class:`HealthBook`
owned by the upstream client, so it is shared by routes that name the same
target and survives a route reload.

Failures are logged by :class:`FailureLog`: one line per failure naming the
route, the target and the cause, at most one line per target and cause every
:data:`FAILURE_LOG_INTERVAL` seconds (the next line says how many were left
out), never a traceback.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from bastion.gateway.errors import UpstreamFailureError

__all__ = [
    "FAILURE_LOG_INTERVAL",
    "FailureLog",
    "HealthBook",
    "HealthPolicy",
    "TargetHealth",
    "Targets",
    "Upstream",
]

log = logging.getLogger("bastion.gateway.upstreams")

#: Seconds between two log lines about the same target failing for the same cause.
FAILURE_LOG_INTERVAL: Final = 10.0
_MAX_TRACKED: Final = 10_000


@dataclass(frozen=True, slots=True)
class Upstream:
    """A parsed upstream URL: where to connect and what to prepend to forwarded paths."""

    scheme: str  # "http" or "https"
    host: str  # host name or IP literal, without brackets
    port: int
    base_path: str  # "" or "/base" (never a trailing slash)
    host_header: bytes  # the Host header to send ("host" or "host:port")
    # https only: the route's own TLS context (private CA, client certificate), None = the
    # client's default (system CAs); tls_profile tells pools of different contexts apart.
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    tls_profile: str = ""
    # The connection-pool and health key: (scheme, host, port, tls_profile), built once
    # (it is looked up for every proxied request).
    key: tuple[str, str, int, str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.scheme, self.host, self.port, self.tls_profile))


class FailureLog:
    """Logs upstream failures: one line each, at most one per target and cause per interval.

    ``failed(route, error)`` is called by the proxy step for every
    :class:`~bastion.gateway.errors.UpstreamFailureError`. A target that is down
    fails every request; logging each (let alone with a traceback) would bury
    everything else, so repeats within ``interval`` are counted and the count
    is reported on the next line for that target.
    """

    def __init__(
        self,
        *,
        interval: float = FAILURE_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self._clock = clock
        # (target, cause) -> (time of the last line, failures left out since)
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def failed(self, route: str, error: UpstreamFailureError) -> None:
        """Log ``error`` (on ``route``) unless the same target and cause was logged lately."""
        key = (error.target, error.cause)
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            self._seen[key] = (seen[0], seen[1] + 1)
            return
        if len(self._seen) >= _MAX_TRACKED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        left_out = seen[1] if seen is not None else 0
        more = f" (+{left_out} more in the last {self.interval:g} s)" if left_out else ""
        log.warning(
            "upstream failed: route=%s target=%s cause=%s (%s) -> %d %s%s",
            route,
            error.target or "-",
            error.cause or "-",
            error.note or error.detail,
            error.status,
            error.code,
            more,
        )


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """When a target is ejected and for how long (``RouteSettings.health``)."""

    failures: int = 3
    cooldown: float = 5.0
    max_cooldown: float = 300.0


class TargetHealth:
    """The passive health state of one upstream target."""

    __slots__ = ("backoff", "ejected_until", "failures", "probing")

    def __init__(self) -> None:
        self.failures = 0  # consecutive connection failures
        self.ejected_until = 0.0  # loop time; 0 = never ejected (or restored)
        self.backoff = 0.0  # the last cool-down applied; 0 = none yet
        self.probing = False  # a half-open probe is in flight

    def ejected(self, now: float) -> bool:
        """Whether the target must be skipped at ``now`` (cooling down, or being probed)."""
        if self.ejected_until == 0.0:
            return False
        return now < self.ejected_until or self.probing

    def claim(self, now: float) -> bool:
        """Take the target for one request; False when it is ejected or already probed."""
        if self.ejected_until == 0.0:
            return True
        if now < self.ejected_until or self.probing:
            return False
        self.probing = True  # half-open: this request is the probe
        return True

    def succeeded(self) -> None:
        """A connection was established: the target is healthy again."""
        self.failures = 0
        self.ejected_until = 0.0
        self.backoff = 0.0
        self.probing = False

    def failed(self, now: float, policy: HealthPolicy) -> None:
        """A connection attempt failed: count it, eject the target when the policy says so."""
        if self.probing or self.ejected_until != 0.0:
            # A failed probe (or a request that picked the target just before it was
            # ejected): back off twice as long as last time.
            self.probing = False
            self.backoff = min(max(self.backoff * 2, policy.cooldown), policy.max_cooldown)
            self.ejected_until = now + self.backoff
            return
        self.failures += 1
        if self.failures >= policy.failures:
            self.failures = 0
            self.backoff = policy.cooldown
            self.ejected_until = now + self.backoff

    def release(self) -> None:
        """The probe ended without a verdict (e.g. the client went away): allow another."""
        self.probing = False


class HealthBook:
    """Health states by target address, created on first use."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str, int, str], TargetHealth] = {}

    def of(self, upstream: Upstream) -> TargetHealth:
        """The health state of ``upstream`` (a new, healthy one the first time)."""
        key = upstream.key
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = TargetHealth()
        return state


class Targets:
    """The upstream targets of one route, chosen round-robin among the healthy ones."""

    __slots__ = ("_next", "policy", "upstreams")

    def __init__(self, upstreams: Iterable[Upstream], policy: HealthPolicy | None = None) -> None:
        self.upstreams: tuple[Upstream, ...] = tuple(upstreams)
        if not self.upstreams:
            raise ValueError("a route needs at least one upstream target")
        self.policy = policy if policy is not None else HealthPolicy()
        self._next = 0

    def __len__(self) -> int:
        return len(self.upstreams)

    def choose(
        self, book: HealthBook, now: float, exclude: tuple[Upstream, ...] = ()
    ) -> Upstream | None:
        """Claim the next healthy target not in ``exclude``; ``None`` when there is none.

        A claimed half-open target must be reported back with
        :meth:`TargetHealth.succeeded`, :meth:`~TargetHealth.failed` or
        :meth:`~TargetHealth.release`.
        """
        upstreams = self.upstreams
        count = len(upstreams)
        start = self._next
        self._next = (start + 1) % count
        for offset in range(count):
            upstream = upstreams[(start + offset) % count]
            if upstream in exclude:
                continue
            if book.of(upstream).claim(now):
                return upstream
        return None

    def retry_after(self, book: HealthBook, now: float) -> int:
        """Whole seconds until the first ejected target may be probed again (at least 1)."""
        soonest = min(
            (book.of(u).ejected_until for u in self.upstreams if book.of(u).ejected_until),
            default=now,
        )
        return max(1, int(soonest - now + 0.999))
