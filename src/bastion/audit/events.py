"""Audit events: what every security decision records, and the in-process bus they travel on.

An :class:`Event` is one security decision (a login, a token issued or refused,
a gateway denial, an admin change …). Code that decides calls
:meth:`Auditor.record` — cheap, synchronous, never blocking on I/O — and the
auditor hands the event to

- its **listeners** (detectors, metrics) synchronously, in the caller's task:
  they must be O(1) and must not raise (a raising listener is logged and
  skipped, never allowed to break the request);
- its **queue**, drained in batches by the writer (``audit/writer.py``), which
  chains the events (``audit/chain.py``) and writes them to the sinks.

Event ``type`` names are dotted, ``<area>.<what>``; the catalogue below is the
vocabulary detectors, metrics and operators rely on — add new names here.
``outcome`` is one of :data:`OUTCOMES`. ``reason`` is the stable machine code
(the same ``code`` the error rendered to the client, or a finer one).

No secret ever goes into an event: not a password, token, API key, TOTP code or
client secret — only identifiers (key id, client id, subject, token ``jti``) and
digests.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from bastion.audit.aggregates import TrafficCounter
from bastion.audit.sanitize import FIELD_LIMITS, encode_data, encode_text
from bastion.storage.models import AuditEvent

__all__ = [
    "OUTCOMES",
    "Auditor",
    "Event",
    "EventTypes",
    "Listener",
    "Outcome",
    "encode_event",
    "text_members",
]

log = logging.getLogger("bastion.audit")

Outcome = Literal["success", "failure", "denied", "info"]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)


class EventTypes:
    """The catalogue of event types (strings; grouped by area)."""

    # authentication at the authorization server / login UI
    LOGIN = "auth.login"  # success | failure (reason: bad_password, unknown_user, locked …)
    MFA = "auth.mfa"  # success | failure
    CLIENT_AUTH = "auth.client"  # OAuth client authentication at the token endpoint
    SESSION_STARTED = "session.started"  # a browser session began (a login); data.amr
    SESSION_ENDED = "session.ended"  # reason: logout|idle|expired|user_disabled|…
    AUTHORIZE = "oauth.authorize"  # success: a code issued | failure: reason = the error
    LOGOUT = "oauth.logout"  # RP-initiated logout: success | failure (reason: why refused)
    BACKCHANNEL_LOGOUT = "logout.backchannel"  # a logout token delivered | failure (reason)
    CONSENT_GIVEN = "consent.given"  # a user allowed a client a scope set; data.scope
    CONSENT_REVOKED = "consent.revoked"  # reason: who (admin, cli); data.scopes, refresh_tokens
    # tokens
    TOKEN_ISSUED = "token.issued"  # noqa: S105
    TOKEN_REFUSED = "token.refused"  # reason: the OAuth error code  # noqa: S105
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    CODE_REUSE = "token.code_reuse"  # an authorization code presented twice
    REFRESH_REUSE = "token.refresh_reuse"  # a rotated refresh token presented again
    # gateway
    GATEWAY_DENIED = "gateway.denied"  # outcome denied; reason = the error code
    GATEWAY_TRAFFIC = "gateway.traffic"  # per-minute aggregate of allowed requests
    # rate limiting: the shared limiter (Redis) became unreachable / reachable again
    RATELIMIT_BACKEND_DOWN = "ratelimit.backend_down"  # outcome failure; data.fail_modes
    RATELIMIT_BACKEND_UP = "ratelimit.backend_up"  # outcome success; data.down_seconds
    # lifecycle (admin plane and CLI)
    CLIENT_CHANGED = "client.changed"  # data.action: created|updated|secret_rotated|disabled|…
    KEY_CHANGED = "api_key.changed"  # data.action: created|rotated|revoked|disabled|…
    KEY_LEAKED = "api_key.leaked"
    SIGNING_KEY_CHANGED = "signing_key.changed"
    USER_CHANGED = "user.changed"
    CONFIG = "config.changed"  # routes reloaded, overrides changed
    # detectors
    ALERT = "alert.raised"
    # the audit log itself
    CHECKPOINT = "audit.checkpoint"  # chain anchor written before pruning / periodically
    DROPPED = "audit.dropped"  # data.count: events lost because the queue was full


@dataclass(frozen=True, slots=True)
class Event:
    """One security decision, before it is chained and stored."""

    type: str
    outcome: Outcome
    reason: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    subject: str | None = None
    client_id: str | None = None
    key_id: str | None = None
    route: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=lambda: datetime.now(UTC))


Listener = Callable[[Event], None]


def text_members(event: Event | AuditEvent) -> dict[str, Any]:
    """The text members every event and stored record has, by name: those
    :data:`~bastion.audit.sanitize.FIELD_LIMITS` caps (``type`` … ``route``), in the order
    records list them. The chain, the stored record and the webhook payload copy them."""
    return {name: getattr(event, name) for name in FIELD_LIMITS}


def encode_event(event: Event) -> Event:
    """``event`` with its user-controlled strings encoded and capped (``audit/sanitize.py``).

    Returns the same object when nothing needed encoding and ``data`` is empty.
    """
    changes: dict[str, Any] = {}
    for name, limit in FIELD_LIMITS.items():
        value = getattr(event, name)
        if value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        encoded = encode_text(text, limit)
        if encoded is not value:
            changes[name] = encoded
    if event.data:
        changes["data"] = encode_data(event.data)
    return replace(event, **changes) if changes else event


class Auditor:
    """The in-process event bus: listeners see every event at once; the writer drains the queue.

    ``record`` never blocks and never raises. The queue is bounded by
    ``max_queue``: when the writer cannot keep up (the database is down),
    the oldest events stay and new ones are counted in :attr:`dropped` —
    a gap the writer reports as an event of its own once it catches up.
    """

    def __init__(self, *, max_queue: int = 100_000) -> None:
        self._listeners: list[Listener] = []
        self.queue: deque[Event] = deque()
        self.max_queue = max_queue
        self.dropped = 0
        self._wakeup: Callable[[], None] | None = None
        # Allowed gateway requests, counted per minute (the writer turns them into events).
        self.traffic = TrafficCounter()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every later event; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def set_wakeup(self, wakeup: Callable[[], None] | None) -> None:
        """Install the writer's nudge, called when the queue grows past a batch."""
        self._wakeup = wakeup

    def emit(self, event: Event) -> Event:
        """Encode ``event``'s user-controlled strings, hand it to every listener, queue it.

        Returns the encoded event.
        """
        event = encode_event(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener must never break the decision being recorded
                log.exception("audit listener %r failed", listener)
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            return event
        self.queue.append(event)
        if self._wakeup is not None and len(self.queue) >= 256:
            self._wakeup()
        return event

    def record(
        self,
        type: str,
        outcome: Outcome,
        *,
        reason: str | None = None,
        request_id: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        subject: str | None = None,
        client_id: str | None = None,
        key_id: str | None = None,
        route: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> Event:
        """Build an :class:`Event` from the arguments, :meth:`emit` it, and return it."""
        event = Event(
            type=type,
            outcome=outcome,
            reason=reason,
            request_id=request_id,
            ip=ip,
            user_agent=user_agent,
            subject=subject,
            client_id=client_id,
            key_id=key_id,
            route=route,
            data=data if data is not None else {},
        )
        return self.emit(event)

    def take(self, limit: int) -> list[Event]:
        """Remove and return up to ``limit`` of the oldest queued events."""
        queue = self.queue
        count = min(limit, len(queue))
        return [queue.popleft() for _ in range(count)]
