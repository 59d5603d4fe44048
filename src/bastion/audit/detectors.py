"""Detectors: continuous checks over the audit event stream, each raising one kind of alert.

Every detector has one method, ``observe(event) -> Alert | None`` (the
:class:`~bastion.audit.alerts.Detector` protocol), called synchronously for
every audit event by the :class:`~bastion.audit.alerts.AlertManager`. Each is
O(1) amortised per event and keeps bounded memory: per-key state lives in an
LRU map of at most ``max_keys`` entries, and each entry is bounded by the
detector's threshold. Time comes from an injected clock (seconds), so tests
replay an attack at fixed instants.

"Accounts" are whatever authenticates: the ``subject`` of an event, else its
``client_id`` (OAuth clients at the token endpoint today, users at the login
UI later). Authentication failures are events of :data:`FAILURE_TYPES` with
outcome ``failure``.

=====================  ========================================================  ========
alert type             fires when                                                severity
=====================  ========================================================  ========
``brute_force``        one account fails ``failures`` times within ``window``   high
``ip_failures``        one IP fails ``failures`` times within ``window``        medium
``credential_stuffing`` one IP fails on ``accounts`` distinct accounts in window high
``denial_spike``       a route's / key's 401/403/429 count this interval is a    medium
                       z-score outlier of its EWMA (see :class:`DenialSpikeDetector`)
``new_network``        a key / subject is used from a network it was not seen in low
``refresh_token_reuse`` a rotated refresh token is presented again              high
``code_reuse``         an authorization code is presented twice                  high
=====================  ========================================================  ========

docs/alerts.md explains the thresholds and the maths for operators.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import ClassVar, Final, Generic, TypeVar

from bastion.audit.alerts import Alert, Clock, Detector, Severity
from bastion.audit.events import Event, EventTypes
from bastion.ratelimit.addresses import ip_bucket
from bastion.settings.alerts import DetectorSettings

__all__ = [
    "FAILURE_TYPES",
    "BruteForceDetector",
    "CredentialStuffingDetector",
    "DenialSpikeDetector",
    "IpFailuresDetector",
    "KeyLeakDetector",
    "NewNetworkDetector",
    "TokenReuseDetector",
    "build_detectors",
]

#: Event types whose ``failure`` outcome is a failed authentication of an account.
FAILURE_TYPES: Final = frozenset({EventTypes.LOGIN, EventTypes.CLIENT_AUTH, EventTypes.MFA})

#: Longest account / key text kept as a map key or shown in an alert.
_MAX_ID: Final = 256

K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """An insertion-ordered map of at most ``size`` entries; the least recently used go first."""

    __slots__ = ("_items", "size")

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self.size = size

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def setdefault(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key`` (now the most recent), or ``make()``'s, put under it."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


def _account(event: Event) -> str | None:
    account = event.subject or event.client_id
    return account[:_MAX_ID] if account else None


def _is_auth_failure(event: Event) -> bool:
    return event.outcome == "failure" and event.type in FAILURE_TYPES


class _WindowCounter:
    """Per key, the times of the last ``threshold`` hits; full within ``window`` = fire."""

    __slots__ = ("_keys", "threshold", "window")

    def __init__(self, threshold: int, window: float, max_keys: int) -> None:
        self.threshold = threshold
        self.window = window
        self._keys: _LRU[str, deque[float]] = _LRU(max_keys)

    def hit(self, key: str, now: float) -> float | None:
        """Count a hit; when it completes ``threshold`` hits within the window, reset the key
        and return the time of the first of them."""
        times = self._keys.setdefault(key, lambda: deque(maxlen=self.threshold))
        times.append(now)
        if len(times) == self.threshold and times[0] > now - self.window:
            first = times[0]
            self._keys.pop(key)  # start afresh: a continuing attack raises again (deduplicated)
            return first
        return None


class _FailureCountDetector:
    """``failures`` failed authentications of one source within ``window`` seconds.

    Which events count against which source, and how the source reads in the alert,
    is each subclass's; the defaults of ``failures`` and ``window`` are the settings'
    (``alerts.detectors``).
    """

    name: str
    severity: ClassVar[Severity]
    #: What the alert's ``dedup_key`` calls the source (``<kind>:<source>``).
    kind: ClassVar[str]

    def __init__(
        self,
        *,
        failures: int,
        window: float,
        max_keys: int = 100_000,
        clock: Clock = time.time,
    ) -> None:
        self.counter = _WindowCounter(failures, window, max_keys)
        self.clock = clock

    def _source(self, event: Event) -> str | None:
        """The source ``event`` counts against, or ``None`` when it does not count."""
        raise NotImplementedError

    def _where(self, source: str) -> str:
        """The source as the alert's summary names it."""
        raise NotImplementedError

    def observe(self, event: Event) -> Alert | None:
        """An alert when ``event`` completes the threshold for its source."""
        source = self._source(event)
        if source is None:
            return None
        now = self.clock()
        first = self.counter.hit(source, now)
        if first is None:
            return None
        return self._alert(event, source, first, now)

    def _alert(self, event: Event, source: str, first: float, now: float) -> Alert:
        n, window = self.counter.threshold, self.counter.window
        return Alert(
            type=self.name,
            severity=self.severity,
            summary=f"{n} failed authentications {self._where(source)} within {window:g}s",
            dedup_key=f"{self.kind}:{source}",
            first_seen=first,
            last_seen=now,
            count=n,
            ip=event.ip,
            data={"failures": n, "window": window},
        )


class BruteForceDetector(_FailureCountDetector):
    """``failures`` failed authentications of one account within ``window`` seconds."""

    name = "brute_force"
    severity = "high"
    kind = "account"

    def _source(self, event: Event) -> str | None:
        return _account(event) if _is_auth_failure(event) else None

    def _where(self, source: str) -> str:
        return f"of account {source!r}"

    def _alert(self, event: Event, source: str, first: float, now: float) -> Alert:
        # An account's alert also names who failed and where (login, client auth, MFA).
        alert = super()._alert(event, source, first, now)
        return replace(
            alert,
            subject=event.subject,
            client_id=event.client_id,
            data={**alert.data, "event_type": event.type},
        )


class IpFailuresDetector(_FailureCountDetector):
    """``failures`` failed authentications from one IP within ``window`` seconds.

    Counts account failures (:data:`FAILURE_TYPES`) and gateway denials with
    status 401 (a wrong or unknown credential at the gateway).
    """

    name = "ip_failures"
    severity = "medium"
    kind = "ip"

    def _source(self, event: Event) -> str | None:
        if event.ip is None:
            return None
        if not (_is_auth_failure(event) or _gateway_status(event) == 401):
            return None
        # Counted like the per-IP limits: an IPv6 client rotating addresses in its /64 is one.
        return ip_bucket(event.ip)

    def _where(self, source: str) -> str:
        return f"from {source}"


class CredentialStuffingDetector:
    """One IP failing on ``accounts`` distinct accounts within ``window`` seconds.

    Per IP it keeps the accounts that failed with their last failure time,
    oldest first; entries older than the window are dropped as new ones come,
    and the map never holds more than ``accounts`` entries (reaching that fires
    and resets), so memory per IP is bounded by the threshold.
    """

    name = "credential_stuffing"

    def __init__(
        self,
        *,
        accounts: int = 20,
        window: float = 600.0,
        max_keys: int = 100_000,
        clock: Clock = time.time,
    ) -> None:
        self.accounts = accounts
        self.window = window
        self.clock = clock
        self._ips: _LRU[str, OrderedDict[str, float]] = _LRU(max_keys)

    def observe(self, event: Event) -> Alert | None:
        """A ``credential_stuffing`` alert when ``event``'s IP reaches the account count."""
        if not _is_auth_failure(event) or event.ip is None:
            return None
        account = _account(event)
        if account is None:
            return None
        now = self.clock()
        source = ip_bucket(event.ip)  # as the per-IP limits count (one IPv6 /64 is one client)
        seen = self._ips.setdefault(source, OrderedDict)
        seen[account] = now
        seen.move_to_end(account)
        horizon = now - self.window
        while seen and next(iter(seen.values())) <= horizon:
            seen.popitem(last=False)
        if len(seen) < self.accounts:
            return None
        first = next(iter(seen.values()))
        sample = list(seen)[:5]
        self._ips.pop(source)
        return Alert(
            type=self.name,
            severity="high",
            summary=(
                f"{self.accounts} distinct accounts failed authentication from {source} "
                f"within {self.window:g}s"
            ),
            dedup_key=f"ip:{source}",
            first_seen=first,
            last_seen=now,
            count=self.accounts,
            ip=event.ip,
            data={"accounts": self.accounts, "window": self.window, "sample_accounts": sample},
        )


def _gateway_status(event: Event) -> int | None:
    if event.type != EventTypes.GATEWAY_DENIED:
        return None
    status = event.data.get("status")
    return status if isinstance(status, int) and not isinstance(status, bool) else None


@dataclass(slots=True)
class _Series:
    """The EWMA state of one route's / key's denial counts."""

    index: int  # the interval being counted
    count: int = 0  # denials in it so far
    mean: float = 0.0  # EWMA of the closed intervals' counts
    var: float = 0.0  # exponentially weighted variance of the same
    alerted: bool = False  # this interval already raised

    def close(self, value: float, alpha: float) -> None:
        # Incremental EWMA and EW variance (Finch 2009, "Incremental calculation of
        # weighted mean and variance", section 9).
        diff = value - self.mean
        self.mean += alpha * diff
        self.var = (1.0 - alpha) * (self.var + alpha * diff * diff)


class DenialSpikeDetector:
    """401/403/429 spikes per route (``by="route"``) or per key (``by="key"``): EWMA + z-score.

    Time is cut into intervals of ``interval`` seconds. For each series (a
    route, or a key / subject / client) the detector counts this interval's
    gateway denials whose ``data.status`` is in ``statuses`` (a denial without
    a status counts too). When an interval closes, its count ``x`` updates an
    exponentially weighted mean and variance (``alpha`` the weight of the
    newest interval; empty intervals in between count as 0)::

        d = x - mean;  mean += alpha * d;  var = (1 - alpha) * (var + alpha * d * d)

    While an interval is counted, its running count ``c`` is tested against
    the history: ``sigma = max(sqrt(var), sqrt(max(mean, 1)))`` — never below
    the Poisson noise of the mean, so a quiet series does not alert on a
    handful of denials — and ``z = (c - mean) / sigma``. The interval raises
    one alert when ``c >= min_count`` and ``z >= z``. With no history (a new
    series), mean = 0 and sigma = 1: the first ``min_count`` denials alert.
    """

    name = "denial_spike"

    def __init__(
        self,
        *,
        by: str = "route",
        interval: float = 60.0,
        alpha: float = 0.1,
        z: float = 4.0,
        min_count: int = 20,
        statuses: Iterable[int] = (401, 403, 429),
        max_keys: int = 100_000,
        clock: Clock = time.time,
    ) -> None:
        if by not in ("route", "key"):
            raise ValueError(f"by must be 'route' or 'key', not {by!r}")
        self.by = by
        self.interval = interval
        self.alpha = alpha
        self.z = z
        self.min_count = min_count
        self.statuses = frozenset(statuses)
        self.clock = clock
        self._series: _LRU[str, _Series] = _LRU(max_keys)

    def _key(self, event: Event) -> str | None:
        if self.by == "route":
            return event.route
        value = event.key_id or event.subject or event.client_id
        return value[:_MAX_ID] if value else None

    def observe(self, event: Event) -> Alert | None:
        """A ``denial_spike`` alert when ``event`` makes its series' interval an outlier."""
        if event.type != EventTypes.GATEWAY_DENIED:
            return None
        status = _gateway_status(event)
        if status is not None and status not in self.statuses:
            return None
        key = self._key(event)
        if key is None:
            return None
        now = self.clock()
        index = int(now // self.interval)
        series = self._series.setdefault(key, lambda: _Series(index))
        if index > series.index:  # a new series starts at ``index``: nothing to close
            series.close(series.count, self.alpha)
            # Empty intervals in between pull the mean down; after 64 of them the
            # history is gone anyway (0.9**64 < 0.1 %), so the loop is bounded.
            for _ in range(min(index - series.index - 1, 64)):
                series.close(0.0, self.alpha)
            series.index, series.count, series.alerted = index, 0, False
        series.count += 1
        if series.alerted or series.count < self.min_count:
            return None
        sigma = max(math.sqrt(series.var), math.sqrt(max(series.mean, 1.0)))
        score = (series.count - series.mean) / sigma
        if score < self.z:
            return None
        series.alerted = True
        what = f"route {key!r}" if self.by == "route" else f"key {key!r}"
        return Alert(
            type=self.name,
            severity="medium",
            summary=(
                f"{series.count} denials on {what} within {self.interval:g}s; expected "
                f"{series.mean:.1f} ± {sigma:.1f} (z = {score:.1f})"
            ),
            dedup_key=f"{self.by}:{key}",
            first_seen=index * self.interval,
            last_seen=now,
            count=series.count,
            route=event.route if self.by == "route" else None,
            key_id=event.key_id if self.by == "key" else None,
            subject=event.subject if self.by == "key" else None,
            data={
                "by": self.by,
                "count": series.count,
                "mean": round(series.mean, 3),
                "sigma": round(sigma, 3),
                "z": round(score, 3),
                "interval": self.interval,
            },
        )


class NewNetworkDetector:
    """A key, subject or client used from a network (IPv4 /16, IPv6 /48 by default) not seen before.

    Looks at every event with an IP and a ``key_id`` (else ``subject``; else,
    for successes such as ``token.issued``, ``client_id``) whose outcome is not
    ``failure`` (a failed login says nothing about where the
    real owner is). The first network an identity is seen in is learnt
    silently; each later new one raises an alert and is learnt. At most
    ``max_networks`` networks are remembered per identity (least recent
    forgotten).
    """

    name = "new_network"

    def __init__(
        self,
        *,
        ipv4_prefix: int = 16,
        ipv6_prefix: int = 48,
        max_networks: int = 8,
        max_keys: int = 100_000,
        clock: Clock = time.time,
    ) -> None:
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        self.max_networks = max_networks
        self.clock = clock
        self._seen: _LRU[str, _LRU[str, float]] = _LRU(max_keys)

    def _network(self, ip: str) -> str | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        prefix = self.ipv4_prefix if address.version == 4 else self.ipv6_prefix
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))

    def observe(self, event: Event) -> Alert | None:
        """A ``new_network`` alert when ``event``'s identity shows up in an unseen network."""
        if event.outcome == "failure" or event.ip is None:
            return None
        if event.key_id:
            identity, kind = event.key_id[:_MAX_ID], "key"
        elif event.subject:
            identity, kind = event.subject[:_MAX_ID], "subject"
        elif event.client_id and event.outcome == "success":
            identity, kind = event.client_id[:_MAX_ID], "client"
        else:
            return None
        network = self._network(event.ip)
        if network is None:
            return None
        now = self.clock()
        key = f"{kind}:{identity}"
        networks = self._seen.get(key)
        if networks is None:
            networks = _LRU(self.max_networks)
            networks.put(network, now)
            self._seen.put(key, networks)
            return None
        if networks.get(network) is not None:
            networks.put(network, now)
            return None
        networks.put(network, now)
        return Alert(
            type=self.name,
            severity="low",
            summary=f"{kind} {identity!r} used from a new network {network} ({event.ip})",
            dedup_key=f"{key}:{network}",
            first_seen=now,
            last_seen=now,
            subject=event.subject,
            client_id=event.client_id,
            key_id=event.key_id,
            ip=event.ip,
            route=event.route,
            data={"network": network, "event_type": event.type},
        )


class TokenReuseDetector:
    """Refresh-token and authorization-code reuse: every such event is an alert (high severity).

    Reuse means a stolen token or code is being replayed (RFC 9700 §4.14 and
    §4.5); the authorization server has already revoked what it could. Alerts
    fold per client and token family (``data.family``, else ``data.jti``).
    """

    name = "token_reuse"

    _TYPES: Final = {
        EventTypes.REFRESH_REUSE: (
            "refresh_token_reuse",
            "a rotated refresh token was presented again",
        ),
        EventTypes.CODE_REUSE: ("code_reuse", "an authorization code was presented twice"),
    }

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock

    def observe(self, event: Event) -> Alert | None:
        """An alert for every reuse event."""
        entry = self._TYPES.get(event.type)
        if entry is None:
            return None
        kind, what = entry
        now = self.clock()
        family = event.data.get("family") or event.data.get("jti")
        who = event.client_id or event.subject or "unknown client"
        severity: Severity = "high"
        return Alert(
            type=kind,
            severity=severity,
            summary=f"{what} (client {who!r}, ip {event.ip or 'unknown'})",
            dedup_key=f"{who}:{family if isinstance(family, str) else event.request_id or now}",
            first_seen=now,
            last_seen=now,
            subject=event.subject,
            client_id=event.client_id,
            ip=event.ip,
            data={"event_type": event.type, "reason": event.reason},
        )


class KeyLeakDetector:
    """A leaked API key reported through the leak-report endpoint: always an alert (high).

    bastion has already revoked the key (``api_key.leaked`` says so); the alert
    tells the operator and the key's owner that a secret escaped and where the
    report came from. One alert per key.
    """

    name = "key_leak"

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock

    def observe(self, event: Event) -> Alert | None:
        """An alert for every ``api_key.leaked`` event."""
        if event.type != EventTypes.KEY_LEAKED:
            return None
        now = self.clock()
        key = event.key_id or "unknown key"
        source = event.data.get("source") or "unspecified"
        status = event.data.get("status") or event.reason or "revoked"
        return Alert(
            type="api_key_leaked",
            severity="high",
            summary=f"API key {key!r} was reported leaked by {source!s} and is {status}",
            dedup_key=f"key:{key}",
            first_seen=now,
            last_seen=now,
            key_id=event.key_id,
            ip=event.ip,
            data={"source": source, "status": status, "prefix": event.data.get("prefix")},
        )


def build_detectors(settings: DetectorSettings, *, clock: Clock = time.time) -> list[Detector]:
    """The enabled detectors configured by ``alerts.detectors``."""
    detectors: list[Detector] = []
    max_keys = settings.max_tracked
    if settings.brute_force.enabled:
        bf = settings.brute_force
        detectors.append(
            BruteForceDetector(
                failures=bf.failures, window=bf.window, max_keys=max_keys, clock=clock
            )
        )
    if settings.ip_failures.enabled:
        ipf = settings.ip_failures
        detectors.append(
            IpFailuresDetector(
                failures=ipf.failures, window=ipf.window, max_keys=max_keys, clock=clock
            )
        )
    if settings.credential_stuffing.enabled:
        cs = settings.credential_stuffing
        detectors.append(
            CredentialStuffingDetector(
                accounts=cs.accounts, window=cs.window, max_keys=max_keys, clock=clock
            )
        )
    if settings.denial_spike.enabled:
        ds = settings.denial_spike
        for by in ds.per:
            detectors.append(
                DenialSpikeDetector(
                    by=by,
                    interval=ds.interval,
                    alpha=ds.alpha,
                    z=ds.z,
                    min_count=ds.min_count,
                    statuses=ds.statuses,
                    max_keys=max_keys,
                    clock=clock,
                )
            )
    if settings.new_network.enabled:
        nn = settings.new_network
        detectors.append(
            NewNetworkDetector(
                ipv4_prefix=nn.ipv4_prefix,
                ipv6_prefix=nn.ipv6_prefix,
                max_networks=nn.max_networks,
                max_keys=max_keys,
                clock=clock,
            )
        )
    if settings.token_reuse.enabled:
        detectors.append(TokenReuseDetector(clock=clock))
    # Not configurable: a reported leak is always worth telling someone about.
    detectors.append(KeyLeakDetector(clock=clock))
    return detectors
