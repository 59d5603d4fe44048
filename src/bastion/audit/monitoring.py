"""The monitoring chain, wired from the settings: auditor → detectors → alerts → webhooks.

What an alert is and what the manager does with one (deduplicate, record, deliver) is
:mod:`bastion.audit.alerts`; this module only assembles the chain.

:func:`open_alerting` builds, from ``alerts:``, the detectors
(:mod:`bastion.audit.detectors`), the :class:`~bastion.audit.alerts.AlertManager`
listening on the auditor, and the :class:`~bastion.audit.webhook.WebhookSink`
delivering to the webhooks of the YAML file plus the enabled rows of the
``webhooks`` table (read once at start-up; their secrets opened with the
master keyring). :meth:`Alerting.run` is the sink's background loop the
runtime starts and stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from bastion.audit.alerts import AlertManager, Clock
from bastion.audit.detectors import build_detectors
from bastion.audit.events import Auditor
from bastion.audit.webhook import WebhookSink, WebhookTarget
from bastion.crypto import Keyring
from bastion.settings import Settings
from bastion.storage import Database
from bastion.storage.sql.schema import seal_context

__all__ = ["DEAD_LETTER_FILE", "Alerting", "open_alerting"]

log = logging.getLogger("bastion.alerts")

#: The dead-letter file's name in ``data_dir`` when ``alerts.delivery.dead_letter_file`` is unset.
DEAD_LETTER_FILE = "webhook-dead-letters.jsonl"


@dataclass
class Alerting:
    """The running monitoring chain: the alert manager and the webhook sink."""

    manager: AlertManager
    sink: WebhookSink

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver webhooks until ``stop`` is set (pending deliveries are then dead-lettered)."""
        await self.sink.run(stop)

    def close(self) -> None:
        """Stop listening to the auditor."""
        self.manager.detach()
        self.sink.detach()


def yaml_targets(settings: Settings) -> list[WebhookTarget]:
    """The webhooks configured under ``alerts.webhooks``."""
    return [
        WebhookTarget(
            url=hook.url,
            secret=hook.secret.get_secret_value().encode(),
            events=tuple(hook.events),
            name=hook.name or f"alerts.webhooks[{index}]",
        )
        for index, hook in enumerate(settings.alerts.webhooks)
    ]


async def stored_targets(db: Database, keyring: Keyring) -> list[WebhookTarget]:
    """The enabled webhooks of the ``webhooks`` table; a row that cannot be opened is skipped
    (and logged), so one bad row does not stop the server."""
    targets: list[WebhookTarget] = []
    for hook in await db.webhooks.list(enabled_only=True):
        try:
            secret = keyring.open(
                hook.secret_sealed, context=seal_context("webhooks", "secret_sealed", hook.id)
            )
        except Exception as exc:  # a corrupt or foreign row: skip it, say so
            log.error(
                "webhook %s (%s): secret cannot be opened (%s); skipped", hook.id, hook.url, exc
            )
            continue
        targets.append(
            WebhookTarget(
                url=hook.url,
                secret=secret,
                events=tuple(hook.events) or ("alert.raised",),
                name=hook.name or hook.id,
            )
        )
    return targets


async def open_alerting(
    settings: Settings,
    auditor: Auditor,
    *,
    db: Database | None = None,
    keyring: Keyring | None = None,
    node_id: str = "",
    clock: Clock = time.time,
) -> Alerting | None:
    """Build and attach the detectors, alert manager and webhook sink; ``None`` when disabled."""
    config = settings.alerts
    if not config.enabled:
        return None
    targets = yaml_targets(settings)
    if db is not None and keyring is not None:
        targets += await stored_targets(db, keyring)
    delivery = config.delivery
    dead_letters: Path = delivery.dead_letter_file or settings.data_dir / DEAD_LETTER_FILE
    sink = WebhookSink(
        targets,
        node_id=node_id,
        max_queue=delivery.max_queue,
        max_attempts=delivery.max_attempts,
        backoff=delivery.backoff,
        max_backoff=delivery.max_backoff,
        timeout=delivery.timeout,
        workers=delivery.workers,
        dead_letter_file=dead_letters,
        clock=clock,
    )
    manager = AlertManager(
        auditor,
        build_detectors(config.detectors, clock=clock),
        dedup_window=config.dedup_window,
        deliver=sink.deliver_alert,
        clock=clock,
        max_keys=config.detectors.max_tracked,
    )
    manager.attach()
    sink.attach(auditor)
    return Alerting(manager=manager, sink=sink)
