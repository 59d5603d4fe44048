"""Prometheus metrics: one :class:`Metrics` object per process, read at scrape time.

What is counted and where it comes from:

- **gateway requests** — :meth:`Metrics.gateway_request`, called once per
  request by the gateway with the route, the error that ended it (if any) and
  the elapsed time. This is the hot path, so it only bumps plain integers in a
  per-route slot (a ``bisect`` into the bucket bounds and two dict updates, no
  lock, no allocation once the slot exists): ``prometheus_client``'s labelled
  children take a lock per ``inc``/``observe`` and cost ~8x more
  (``bench/metrics/run.py``). The integers are turned into metric families
  only when Prometheus scrapes. ``bastion_rate_limited_total`` and the
  gateway's share of ``bastion_auth_failures_total`` are derived from the
  same slots at scrape time: no extra work per request.
- **security events** — :meth:`Metrics.observe`, an
  :class:`~bastion.audit.events.Auditor` listener: auth failures, tokens
  issued / refused, alerts raised. (Gateway denials are counted by the
  gateway call above, never from ``gateway.denied`` events, so nothing is
  counted twice.)
- **state read at scrape time** — audit queue depth and drops, upstream
  connection pools, build info, and ``prometheus_client``'s process /
  platform / GC collectors.

Label cardinality is bounded by construction: routes and upstreams come from
the configuration; reasons, outcomes and error codes are folded onto a fixed
vocabulary (the codes of bastion's error classes plus :data:`EVENT_REASONS`),
anything else becomes ``other``. Nothing is ever labelled by key id, client
id, subject or IP address.

The counters live in one event loop's thread; a scrape from the same loop
(the ``/metrics`` endpoint, or the separate listener, which runs in the same
loop) sees a consistent view.
"""

from __future__ import annotations

import asyncio
import platform
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from bastion import _native
from bastion.audit.events import Auditor, Event, EventTypes
from bastion.errors import BastionError

__all__ = [
    "EVENT_REASONS",
    "GATEWAY_BUCKETS",
    "NO_ROUTE",
    "OTHER",
    "Metrics",
]

GATEWAY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the gateway latency histogram: 0.5 ms … 10 s, then +Inf."""

NO_ROUTE: Final = "(none)"
"""The ``route`` label of requests that matched no route (404 / 405 / bad path)."""

OTHER: Final = "other"
"""The label value every unknown reason, outcome or type folds into."""

EVENT_REASONS: Final = frozenset(
    {
        # login / MFA / client authentication reasons that are not error-class codes
        "bad_password",
        "unknown_user",
        "locked",
        "disabled",
        "expired",
        "bad_code",
        "code_replayed",
        "mfa_required",
        "bad_signature",
        "bad_secret",
        "unknown_client",
        "rate_limited",
        # OAuth 2.0 error codes (RFC 6749 §5.2, RFC 6750 §3.1, RFC 8693, RFC 9449)
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "invalid_token",
        "insufficient_scope",
        "invalid_dpop_proof",
        "use_dpop_nonce",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
    }
)
"""Reason codes accepted as label values besides the ``code`` of every error class."""

_GRANT_TYPES: Final = {
    "authorization_code": "authorization_code",
    "client_credentials": "client_credentials",
    "refresh_token": "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange": "token_exchange",
    "token_exchange": "token_exchange",
    "urn:ietf:params:oauth:grant-type:device_code": "device_code",
    "device_code": "device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer": "jwt_bearer",
    "jwt_bearer": "jwt_bearer",
}

_SEVERITIES: Final = frozenset({"info", "low", "medium", "warning", "high", "critical"})

# Authentication event types -> the ``method`` label of bastion_auth_failures_total.
_AUTH_EVENTS: Final = {
    EventTypes.LOGIN: "login",
    EventTypes.MFA: "mfa",
    EventTypes.CLIENT_AUTH: "client",
}

# Gateway denial codes that are authentication failures -> the ``method`` label.
_GATEWAY_AUTH_CODES: Final = {
    "unauthenticated": "gateway",  # no accepted credential at all
    "invalid_api_key": "api_key",
    "api_key_in_query": "api_key",  # a key presented in the URL (refused unread)
    "api_key_ip_not_allowed": "api_key",
    "invalid_token": "jwt",
}

_UPSTREAM_CODES: Final = frozenset({"upstream_unavailable", "upstream_timeout", "upstream_aborted"})
UPSTREAM_ERROR: Final = "upstream_error"
ALLOWED: Final = "allowed"

# Alert types come from the detectors (code, not input); still capped, in case one
# ever derives its name from data.
_MAX_ALERT_TYPES: Final = 64
_MAX_UPSTREAM_TARGETS: Final = 1024
_MAX_ROUTES: Final = 4096
_REFRESH_EVERY: Final = 60.0


def _error_codes() -> frozenset[str]:
    """The class-level ``code`` of every loaded :class:`BastionError` subclass."""
    codes: set[str] = set()
    stack: list[type[BastionError]] = [BastionError]
    seen: set[type[BastionError]] = set()
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        code = cls.__dict__.get("code")
        if isinstance(code, str):
            codes.add(code)
        stack.extend(cls.__subclasses__())
    return frozenset(codes)


def _label_text(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and value.replace("_", "").replace("-", "").replace(".", "").isalnum()
        and value.isascii()
        and value == value.lower()
    )


class _RouteSlot:
    """The gateway counters of one route: outcome counts and the latency histogram."""

    __slots__ = ("allowed", "buckets", "label", "outcomes", "sum", "upstream_errors")

    def __init__(self, label: str) -> None:
        self.label = label
        # Non-cumulative counts; the last slot is the +Inf overflow.
        self.buckets: list[int] = [0] * (len(GATEWAY_BUCKETS) + 1)
        self.sum = 0.0
        self.allowed = 0  # the common outcome, kept out of the dict
        self.outcomes: dict[str, int] = {}
        self.upstream_errors: dict[str, int] = {}

    def counts(self) -> dict[str, int]:
        """Every outcome's count (``allowed`` included once it happened)."""
        counts = dict(self.outcomes)
        if self.allowed:
            counts[ALLOWED] = self.allowed
        return counts


class Metrics:
    """Every bastion metric, in its own :class:`~prometheus_client.CollectorRegistry`.

    ``version`` fills ``bastion_build_info``. ``auditor`` (optional) is read
    for its queue depth and drops, and :meth:`attach` subscribes to it.
    ``process`` adds ``prometheus_client``'s process, platform and GC
    collectors (off in tests that build many registries).
    """

    def __init__(
        self,
        *,
        version: str = "",
        auditor: Auditor | None = None,
        process: bool = True,
    ) -> None:
        self.version = version
        self.auditor = auditor
        self.registry = CollectorRegistry(auto_describe=True)
        # Keyed by route name; None (no route matched) is the NO_ROUTE slot.
        self._routes: dict[str | None, _RouteSlot] = {}
        self._codes = _error_codes() | EVENT_REASONS
        # The first unknown code looks again at once: the app's endpoints (forward-auth's
        # errors) are imported after the metrics are built, before any request.
        self._codes_checked = float("-inf")
        self._auth_failures: dict[tuple[str, str], int] = {}
        self._tokens_issued: dict[str, int] = {}
        self._tokens_refused: dict[str, int] = {}
        self._alerts: dict[tuple[str, str], int] = {}
        self._target_failures: dict[tuple[str, str], int] = {}
        self._target_up: dict[tuple[str, str], int] = {}
        self._pools: Callable[[], Mapping[Any, Any]] | None = None
        self._feed: Any = None
        self.registry.register(_Collector(self))
        if process:
            # The same collectors the library registers globally, but in our registry.
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    # -- wiring --------------------------------------------------------------

    def attach(self, auditor: Auditor) -> Callable[[], None]:
        """Count ``auditor``'s events (see :meth:`observe`); returns the unsubscribe function."""
        if self.auditor is None:
            self.auditor = auditor
        return auditor.subscribe(self.observe)

    def watch_upstreams(self, pools: Callable[[], Mapping[Any, Any]]) -> None:
        """Read upstream connection pools at scrape time from ``pools()``.

        ``pools()`` returns the gateway client's ``pools`` mapping (pool key ->
        pool with ``upstream``, ``idle`` and ``opened``).
        """
        self._pools = pools

    def watch_change_feed(self, follower: Any) -> None:
        """Read the change-feed follower (``storage/feed.py``) at scrape time.

        ``follower`` has ``healthy``, ``delivered`` and ``last_read_age``.
        """
        self._feed = follower

    # -- the hot path ----------------------------------------------------------

    def gateway_request(
        self, route: str | None, error: BaseException | None, seconds: float
    ) -> None:
        """Count one gateway request that ended with ``error`` (``None``: allowed).

        ``route`` is the matched route's name (``None``: no route matched);
        ``seconds`` the time the request took. Never raises.
        """
        slot = self._routes.get(route)
        if slot is None:
            slot = self._new_slot(route)
        slot.buckets[bisect_left(GATEWAY_BUCKETS, seconds)] += 1
        slot.sum += seconds
        if error is None:
            slot.allowed += 1
            return
        outcome = self._outcome(slot, error)
        slot.outcomes[outcome] = slot.outcomes.get(outcome, 0) + 1

    def _new_slot(self, route: str | None) -> _RouteSlot:
        if len(self._routes) >= _MAX_ROUTES:
            route = OTHER  # routes come from configuration; this only guards a misuse
            existing = self._routes.get(route)
            if existing is not None:
                return existing
        slot = self._routes[route] = _RouteSlot(NO_ROUTE if route is None else route)
        return slot

    def _outcome(self, slot: _RouteSlot, error: BaseException) -> str:
        if isinstance(error, BastionError):
            code = self.fold(error.code)
            if code in _UPSTREAM_CODES:
                slot.upstream_errors[code] = slot.upstream_errors.get(code, 0) + 1
                return UPSTREAM_ERROR
            return code
        if isinstance(error, asyncio.CancelledError):
            return "cancelled"  # the server cancelled the request (client went away)
        return "error"  # a bug: the HTTP layer answers 500

    def fold(self, code: str | None) -> str:
        """``code`` when it is a known reason / error code, else :data:`OTHER`."""
        if code is None:
            return OTHER
        if code in self._codes:
            return code
        # Error classes imported after start-up add codes: look again, at most once a minute.
        now = time.monotonic()
        if now - self._codes_checked >= _REFRESH_EVERY:
            self._codes_checked = now
            self._codes = _error_codes() | EVENT_REASONS
            if code in self._codes:
                return code
        return OTHER

    # -- security events -------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Count one audit event (an :class:`~bastion.audit.events.Auditor` listener).

        ``auth.login`` / ``auth.mfa`` / ``auth.client`` failures count in
        ``bastion_auth_failures_total{method,reason}``; ``token.issued`` in
        ``bastion_tokens_issued_total{grant_type}`` (``data["grant_type"]``);
        ``token.refused`` in ``bastion_tokens_refused_total{error}`` (the reason);
        ``alert.raised`` in ``bastion_alerts_total{type,severity}`` (``data["type"]``
        or the reason, ``data["severity"]``). Other events are ignored. O(1).
        """
        kind = event.type
        method = _AUTH_EVENTS.get(kind)
        if method is not None:
            if event.outcome == "failure" or event.outcome == "denied":
                key = (method, self.fold(event.reason))
                self._auth_failures[key] = self._auth_failures.get(key, 0) + 1
        elif kind == EventTypes.TOKEN_ISSUED:
            grant = _GRANT_TYPES.get(str(event.data.get("grant_type", "")), OTHER)
            self._tokens_issued[grant] = self._tokens_issued.get(grant, 0) + 1
        elif kind == EventTypes.TOKEN_REFUSED:
            error = self.fold(event.reason)
            self._tokens_refused[error] = self._tokens_refused.get(error, 0) + 1
        elif kind == EventTypes.ALERT:
            self._alert(event)

    def _alert(self, event: Event) -> None:
        name = event.data.get("type") or event.reason
        if not _label_text(name):
            name = OTHER
        severity = event.data.get("severity")
        if severity not in _SEVERITIES:
            severity = OTHER
        key = (str(name), str(severity))
        if key not in self._alerts and len({k[0] for k in self._alerts}) >= _MAX_ALERT_TYPES:
            key = (OTHER, key[1])
        self._alerts[key] = self._alerts.get(key, 0) + 1

    # -- upstream health (for the upstream targets' passive health checks) ----

    def upstream_failure(self, route: str, target: str) -> None:
        """Count one failed attempt of ``route`` at upstream ``target`` (a configured URL)."""
        key = self._target_key(route, target)
        self._target_failures[key] = self._target_failures.get(key, 0) + 1

    def upstream_state(self, route: str, target: str, healthy: bool) -> None:
        """Record whether ``route``'s upstream ``target`` is currently considered healthy."""
        self._target_up[self._target_key(route, target)] = 1 if healthy else 0

    def _target_key(self, route: str, target: str) -> tuple[str, str]:
        key = (route, target)
        if (
            key not in self._target_failures
            and key not in self._target_up
            and len(self._target_failures) + len(self._target_up) >= _MAX_UPSTREAM_TARGETS
        ):
            return (OTHER, OTHER)
        return key

    # -- exposition ------------------------------------------------------------

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """Every metric as ``(body, content type)``, in the format ``accept`` asks for.

        The Prometheus text format 0.0.4 by default; OpenMetrics 1.0 when the
        ``Accept`` header asks for ``application/openmetrics-text``.
        """
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def families(self) -> Iterator[Metric]:
        """bastion's own metric families, built from the current counts."""
        yield from self._gateway_families()
        yield _counter(
            "bastion_auth_failures",
            "Failed authentications by method and reason.",
            ("method", "reason"),
            self._all_auth_failures(),
        )
        yield _counter(
            "bastion_tokens_issued",
            "Access tokens issued by the authorization server, by grant type.",
            ("grant_type",),
            {(k,): v for k, v in list(self._tokens_issued.items())},
        )
        yield _counter(
            "bastion_tokens_refused",
            "Token requests refused, by OAuth error code.",
            ("error",),
            {(k,): v for k, v in list(self._tokens_refused.items())},
        )
        yield _counter(
            "bastion_alerts",
            "Alerts raised by the detectors, by type and severity.",
            ("type", "severity"),
            dict(self._alerts),
        )
        yield from self._audit_families()
        yield _counter(
            "bastion_native_lookups",
            "Control-plane lookups of a native cache miss (API key, certificate, "
            "introspection answer, issuer keys, client status, exchanged token, signing key), "
            "by kind and outcome (found, refused, unavailable, lost).",
            ("kind", "outcome"),
            {(kind, outcome): count for kind, outcome, count in _native.lookup_counts()},
        )
        yield from self._upstream_families()
        yield from self._feed_families()
        info = GaugeMetricFamily(
            "bastion_build_info",
            "bastion's version and Python runtime (always 1).",
            labels=("version", "python"),
        )
        info.add_metric((self.version, platform.python_version()), 1)
        yield info

    def _gateway_families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "bastion_gateway_requests",
            "Gateway requests by route and outcome (allowed, the denial's reason code, "
            "upstream_error).",
            labels=("route", "outcome"),
        )
        duration = HistogramMetricFamily(
            "bastion_gateway_request_duration_seconds",
            "Time from the gateway receiving a request to the end of its response, by route.",
            labels=("route",),
        )
        limited = CounterMetricFamily(
            "bastion_rate_limited",
            "Gateway requests refused by a rate limit (429), by route.",
            labels=("route",),
        )
        upstream = CounterMetricFamily(
            "bastion_upstream_errors",
            "Gateway requests that failed at the upstream, by route and reason.",
            labels=("route", "reason"),
        )
        bounds = [*(_le(b) for b in GATEWAY_BUCKETS), "+Inf"]
        for route, counts, histogram, total, upstream_errors in self._merged_routes():
            for outcome, count in sorted(counts.items()):
                requests.add_metric((route, outcome), count)
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(bounds, histogram, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            duration.add_metric((route,), buckets, total)
            limited.add_metric((route,), counts.get("rate_limited", 0))
            for reason, count in sorted(upstream_errors.items()):
                upstream.add_metric((route, reason), count)
        yield requests
        yield duration
        yield limited
        yield upstream

    def _merged_routes(
        self,
    ) -> list[tuple[str, dict[str, int], list[int], float, dict[str, int]]]:
        """Every route's counts, the native data plane's added to Python's (one series each).

        Rows of ``(route, outcomes, non-cumulative buckets, sum, upstream errors)``,
        sorted by route.
        """
        merged: dict[str, tuple[dict[str, int], list[int], float, dict[str, int]]] = {}
        for slot in list(self._routes.values()):
            merged[slot.label] = (
                slot.counts(),
                list(slot.buckets),
                slot.sum,
                dict(slot.upstream_errors),
            )
        for route, outcomes, errors, histogram, total in _native.metrics_snapshot():
            counts, buckets, seconds, upstream = merged.get(
                route, ({}, [0] * (len(GATEWAY_BUCKETS) + 1), 0.0, {})
            )
            for outcome, count in outcomes:
                counts[outcome] = counts.get(outcome, 0) + count
            for reason, count in errors:
                upstream[reason] = upstream.get(reason, 0) + count
            buckets = [a + b for a, b in zip(buckets, histogram, strict=True)]
            merged[route] = (counts, buckets, seconds + total, upstream)
        return [(route, *merged[route]) for route in sorted(merged)]

    def _all_auth_failures(self) -> dict[tuple[str, ...], int]:
        counts: dict[tuple[str, ...], int] = {k: v for k, v in list(self._auth_failures.items())}
        # The native plane's refusals (a key Python refused) count with Python's.
        for _, outcomes, _, _, _ in self._merged_routes():
            for code, count in outcomes.items():
                method = _GATEWAY_AUTH_CODES.get(code)
                if method is not None:
                    key = (method, code)
                    counts[key] = counts.get(key, 0) + count
        return counts

    def _audit_families(self) -> Iterator[Metric]:
        auditor = self.auditor
        if auditor is None:
            return
        depth = GaugeMetricFamily(
            "bastion_audit_queue_depth", "Audit events queued, not yet written to the sinks."
        )
        depth.add_metric((), len(auditor.queue))
        yield depth
        dropped = CounterMetricFamily(
            "bastion_audit_events_dropped",
            "Audit events dropped because the queue was full (the writer fell behind).",
        )
        dropped.add_metric((), auditor.dropped)
        yield dropped
        native = CounterMetricFamily(
            "bastion_native_audit_dropped",
            "Decision events the native data plane dropped because its audit queue was full "
            "(allows are dropped before denials), by decision.",
            labels=("decision",),
        )
        allows, denials = _native.audit_dropped()
        native.add_metric(("allow",), allows)
        native.add_metric(("deny",), denials)
        yield native
        pending = GaugeMetricFamily(
            "bastion_native_audit_queue_depth",
            "Decision events queued by the native data plane, not yet drained.",
        )
        pending.add_metric((), _native.audit_pending())
        yield pending

    def _upstream_families(self) -> Iterator[Metric]:
        if self._pools is not None:
            idle = GaugeMetricFamily(
                "bastion_upstream_idle_connections",
                "Idle keep-alive connections pooled per upstream (Python and native pools).",
                labels=("upstream",),
            )
            opened = CounterMetricFamily(
                "bastion_upstream_connections_opened",
                "Connections opened to each upstream (Python and native pools).",
                labels=("upstream",),
            )
            counts: dict[str, list[int]] = {}
            for pool in list(self._pools().values()):
                up = pool.upstream
                name = f"{up.scheme}://{up.host}:{up.port}"
                entry = counts.setdefault(name, [0, 0])
                entry[0] += len(pool.idle)
                entry[1] += pool.opened
            for name, native_idle, native_opened in _native.upstream_pools():
                entry = counts.setdefault(name, [0, 0])
                entry[0] += native_idle
                entry[1] += native_opened
            for name, (idle_count, opened_count) in counts.items():
                idle.add_metric((name,), idle_count)
                opened.add_metric((name,), opened_count)
            yield idle
            yield opened
        yield _counter(
            "bastion_upstream_target_failures",
            "Failed attempts at an upstream target, by route and target.",
            ("route", "target"),
            dict(self._target_failures),
        )
        up_family = GaugeMetricFamily(
            "bastion_upstream_target_up",
            "1 while an upstream target is considered healthy, 0 while it is ejected.",
            labels=("route", "target"),
        )
        for key, value in sorted(self._target_up.items()):
            up_family.add_metric(key, value)
        yield up_family

    def _feed_families(self) -> Iterator[Metric]:
        feed = self._feed
        if feed is None:
            return
        healthy = GaugeMetricFamily(
            "bastion_change_feed_healthy",
            "1 while this node reads the change feed (others' changes reach its caches), else 0.",
        )
        healthy.add_metric((), 1 if feed.healthy else 0)
        yield healthy
        age = GaugeMetricFamily(
            "bastion_change_feed_last_read_age_seconds",
            "Seconds since this node last read the change feed successfully.",
        )
        age.add_metric((), feed.last_read_age)
        yield age
        delivered = CounterMetricFamily(
            "bastion_change_feed_changes",
            "Changes this node read from the change feed and handed to its caches.",
        )
        delivered.add_metric((), feed.delivered)
        yield delivered


def _le(bound: float) -> str:
    return repr(float(bound))


def _counter(
    name: str, documentation: str, labels: tuple[str, ...], counts: Mapping[Any, int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(counts.items()):
        family.add_metric(tuple(key), value)
    return family


class _Collector(Collector):
    """Hands the registry bastion's families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return list(self._metrics.families())
