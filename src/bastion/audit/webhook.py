"""Webhook delivery of alerts and audit events: signed, retried with backoff, dead-lettered.

Each delivery is one ``POST`` of a JSON body to a configured URL with::

    Content-Type: application/json
    X-Bastion-Delivery: <delivery id, the same on every retry — receivers deduplicate on it>
    X-Bastion-Timestamp: <unix seconds when this attempt was signed>
    X-Bastion-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

Receivers recompute the HMAC over the timestamp, a dot and the raw body,
compare in constant time, and refuse timestamps outside their replay window
(five minutes is usual); :func:`verify_signature` does exactly that and is
what docs/alerts.md shows.

Delivery never blocks the request path: :meth:`WebhookSink.deliver_alert` and
:meth:`WebhookSink.deliver_event` only append to a bounded queue (full: the
delivery is dropped and counted in ``dropped``, with one log line). Worker
tasks post with ``httpx``. A network error, a timeout, 408, 429 or 5xx is
retried after ``min(backoff * 2**(attempt-1), max_backoff)`` seconds with equal
jitter (half fixed, half random); any other status is permanent. After
``max_attempts`` attempts, on a permanent failure, or when the process stops
with deliveries pending, the delivery is **dead-lettered**: appended as one
JSON line to the dead-letter file (when configured), logged as a warning and
counted in ``dead_lettered``. The file holds the payloads (no secrets), so
an operator can inspect and replay them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from bastion.audit.alerts import Alert
from bastion.audit.events import Auditor, Event, EventTypes, text_members
from bastion.crypto.digests import constant_time_equals, hmac_sha256_hex
from bastion.errors import BastionError
from bastion.storage.models import new_id

if TYPE_CHECKING:  # httpx loads only where it is used (tests/features/serve/test_idle_imports.py)
    import httpx

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookSignatureError",
    "WebhookSink",
    "WebhookTarget",
    "sign",
    "verify_signature",
]

log = logging.getLogger("bastion.webhooks")

SIGNATURE_HEADER: Final = "X-Bastion-Signature"
TIMESTAMP_HEADER: Final = "X-Bastion-Timestamp"
DELIVERY_HEADER: Final = "X-Bastion-Delivery"

_RETRY_STATUSES: Final = frozenset({408, 425, 429})
_USER_AGENT: Final = "bastion-webhooks/1"


class WebhookSignatureError(BastionError):
    """A webhook delivery's signature or timestamp does not verify (receiver side)."""

    code = "webhook_signature_invalid"
    status = 401
    title = "Webhook signature invalid"


def sign(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """The ``X-Bastion-Signature`` value of ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac_sha256_hex(secret, f"{timestamp}.".encode() + body)


def verify_signature(
    secret: bytes | str,
    *,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    tolerance: float = 300.0,
    now: float | None = None,
) -> None:
    """Check a delivery as a receiver would; return nothing or raise.

    Raises:
        WebhookSignatureError: a header is missing, the timestamp is not a
            number or lies more than ``tolerance`` seconds from ``now``
            (replayed or badly delayed), or the signature does not match.
    """
    if not timestamp or not signature:
        raise WebhookSignatureError("missing X-Bastion-Timestamp or X-Bastion-Signature")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise WebhookSignatureError("X-Bastion-Timestamp is not a number of seconds")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise WebhookSignatureError("X-Bastion-Timestamp is outside the replay window")
    if not constant_time_equals(sign(secret, int(timestamp), body), signature):
        raise WebhookSignatureError("X-Bastion-Signature does not match the body")


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """One receiver: its URL, signing secret and the event types it wants.

    ``events`` are event types or shell-style patterns (``alert.raised``,
    ``token.*``, ``*``); alerts are sent to targets whose patterns match
    ``alert.raised``.
    """

    url: str
    secret: bytes = field(repr=False)
    events: tuple[str, ...] = (EventTypes.ALERT,)
    name: str = ""

    def wants(self, event_type: str) -> bool:
        """Whether this target subscribes to ``event_type``."""
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events)


@dataclass(slots=True)
class _Delivery:
    target: WebhookTarget
    body: bytes
    id: str = field(default_factory=new_id)
    attempts: int = 0
    last_error: str = ""


def _event_json(event: Event) -> dict[str, Any]:
    return {
        **text_members(event),
        "data": dict(event.data),
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
    }


Sleep = Callable[[float], Awaitable[None]]


class WebhookSink:
    """Queues signed deliveries for the configured targets and posts them from worker tasks.

    ``node_id`` goes into every payload. ``workers`` deliveries run at once.
    ``rng`` and ``clock`` are injectable for tests; ``transport`` is an
    optional httpx transport (tests).
    """

    def __init__(
        self,
        targets: Iterable[WebhookTarget],
        *,
        node_id: str = "",
        max_queue: int = 10_000,
        max_attempts: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        timeout: float = 5.0,
        workers: int = 4,
        dead_letter_file: Path | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.targets = tuple(targets)
        self.node_id = node_id
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.workers = workers
        self.dead_letter_file = dead_letter_file
        self.rng = rng
        self.clock = clock
        self.transport = transport
        self._queue: deque[_Delivery] = deque()
        self._waiting: dict[str, tuple[asyncio.TimerHandle, _Delivery]] = {}
        self._in_flight = 0
        self._wakeup: asyncio.Event | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.delivered = 0
        self.retried = 0
        self.dead_lettered = 0
        self.dropped = 0

    # -- producer side (synchronous, never blocks) ------------------------------------------

    def attach(self, auditor: Auditor) -> None:
        """Deliver audit events (other than ``alert.raised``) to the targets that want them."""
        if self._unsubscribe is None and any(
            set(target.events) != {EventTypes.ALERT} for target in self.targets
        ):
            self._unsubscribe = auditor.subscribe(self.deliver_event)

    def detach(self) -> None:
        """Stop listening to the auditor."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def deliver_alert(self, alert: Alert) -> None:
        """Queue ``alert`` for every target that wants ``alert.raised``."""
        self._fan_out(EventTypes.ALERT, "alert", alert.to_json())

    def deliver_event(self, event: Event) -> None:
        """Queue ``event`` for every target that wants its type (alerts go by deliver_alert)."""
        if event.type == EventTypes.ALERT:
            return
        self._fan_out(event.type, "event", _event_json(event))

    def _fan_out(self, event_type: str, kind: str, document: Mapping[str, Any]) -> None:
        for target in self.targets:
            if not target.wants(event_type):
                continue
            delivery = _Delivery(target, b"")
            delivery.body = orjson.dumps(
                {
                    "id": delivery.id,
                    "kind": kind,
                    "node_id": self.node_id,
                    "webhook": target.name,
                    kind: document,
                },
                # Event data is whatever the recorder put in it; never fail on a stray type.
                default=str,
            )
            self._enqueue(delivery)

    def _enqueue(self, delivery: _Delivery) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "webhook queue full (%d): %d deliveries dropped so far",
                    self.max_queue,
                    self.dropped,
                )
            return
        self._queue.append(delivery)
        if self._wakeup is not None:
            self._wakeup.set()

    # -- worker side -----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Deliveries queued, waiting for a retry, or being posted."""
        return len(self._queue) + len(self._waiting) + self._in_flight

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 = the first retry)."""
        ceiling = min(self.backoff * 2.0 ** (attempt - 1), self.max_backoff)
        # Equal jitter: half the delay is fixed, half random, so receivers coming back
        # from an outage are not hit by every node's retries at the same instant.
        return ceiling / 2 + self.rng() * ceiling / 2

    async def run(self, stop: asyncio.Event) -> None:
        """Post queued deliveries until ``stop`` is set; then dead-letter what is left."""
        self._wakeup = asyncio.Event()
        if self._queue:
            self._wakeup.set()
        try:
            if not self.targets and not self._queue:
                # The targets are fixed: nothing can ever be queued. No client then, and
                # no httpx (with httpcore, ~10 MiB resident) in a node without webhooks.
                await stop.wait()
                return
            import httpx

            async with httpx.AsyncClient(
                timeout=self.timeout,
                transport=self.transport,
                follow_redirects=False,
                headers={"User-Agent": _USER_AGENT},
            ) as client:
                workers = [
                    asyncio.create_task(self._worker(client, stop), name=f"webhook-{n}")
                    for n in range(self.workers)
                ]
                try:
                    await stop.wait()
                    self._wakeup.set()
                    await asyncio.gather(*workers, return_exceptions=True)
                finally:
                    for worker in workers:
                        worker.cancel()
        finally:
            # Nothing is lost silently: what could not be sent before the stop is
            # dead-lettered (and so visible to the operator).
            self._dead_letter_pending()

    def _dead_letter_pending(self) -> None:
        for handle, delivery in list(self._waiting.values()):
            handle.cancel()
            self._dead_letter(delivery, "shutdown")
        self._waiting.clear()
        while self._queue:
            self._dead_letter(self._queue.popleft(), "shutdown")

    async def _worker(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        assert self._wakeup is not None
        # After the stop, what is already queued is still sent (the runtime bounds how
        # long); only retries are no longer scheduled.
        while self._queue or not stop.is_set():
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            delivery = self._queue.popleft()
            self._in_flight += 1
            try:
                await self._attempt(client, delivery, stopping=stop.is_set())
            except asyncio.CancelledError:
                self._dead_letter(delivery, "shutdown")
                raise
            finally:
                self._in_flight -= 1

    async def _attempt(
        self, client: httpx.AsyncClient, delivery: _Delivery, *, stopping: bool = False
    ) -> None:
        delivery.attempts += 1
        timestamp = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: delivery.id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(delivery.target.secret, timestamp, delivery.body),
        }
        retry = True
        import httpx

        try:
            response = await client.post(
                delivery.target.url, content=delivery.body, headers=headers
            )
        except httpx.HTTPError as exc:
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:300]
        else:
            if 200 <= response.status_code < 300:
                self.delivered += 1
                return
            delivery.last_error = f"HTTP {response.status_code}"
            retry = response.status_code >= 500 or response.status_code in _RETRY_STATUSES
        if not retry:
            self._dead_letter(delivery, "permanent failure")
        elif delivery.attempts >= self.max_attempts:
            self._dead_letter(delivery, f"{delivery.attempts} attempts failed")
        elif stopping:
            self._dead_letter(delivery, "shutdown")
        else:
            self.retried += 1
            loop = asyncio.get_running_loop()
            handle = loop.call_later(self.delay(delivery.attempts), self._retry, delivery)
            self._waiting[delivery.id] = (handle, delivery)

    def _retry(self, delivery: _Delivery) -> None:
        if self._waiting.pop(delivery.id, None) is None:
            return
        self._queue.append(delivery)  # a retry is never dropped for a full queue
        if self._wakeup is not None:
            self._wakeup.set()

    def _dead_letter(self, delivery: _Delivery, why: str) -> None:
        self.dead_lettered += 1
        log.warning(
            "webhook delivery %s to %s dead-lettered after %d attempt(s): %s (%s)",
            delivery.id,
            delivery.target.name or delivery.target.url,
            delivery.attempts,
            why,
            delivery.last_error or "not attempted",
        )
        if self.dead_letter_file is None:
            return
        line = orjson.dumps(
            {
                "delivery_id": delivery.id,
                "url": delivery.target.url,
                "webhook": delivery.target.name,
                "attempts": delivery.attempts,
                "reason": why,
                "last_error": delivery.last_error,
                "dead_lettered_at": int(self.clock()),
                "body": orjson.loads(delivery.body),
            }
        )
        try:
            # Rare and small: a synchronous append is simpler than a writer task.
            self.dead_letter_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with self.dead_letter_file.open("ab") as file:
                file.write(line + b"\n")
        except OSError as exc:
            log.error(
                "cannot write the webhook dead-letter file %s: %s", self.dead_letter_file, exc
            )
