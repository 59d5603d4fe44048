"""Deleting the rows nothing needs any more: spent authorization codes, expired refresh
tokens, finished browser sessions.

Every node runs :meth:`Pruner.run` (the deletes are idempotent, so nodes need no
coordination): once shortly after start, then every ``interval`` seconds. A row goes only
``keep_for`` after it stopped mattering, so what reads it near its end still finds it:

- an **authorization code** one day after it expired (a code replayed within that day is
  still recognised as spent, and revokes what it issued; later it is simply unknown:
  ``invalid_grant``);
- a **refresh token** one day after it expired (the same for reuse detection: a token
  reused a day past its own expiry is unknown rather than a detected reuse);
- a **browser session** a week after it ended or reached its absolute deadline, or once
  unused for a week beyond the idle timeout (the account page lists live sessions only;
  each start and end stays in the audit log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from bastion.storage.errors import StorageError
from bastion.storage.models import utcnow
from bastion.storage.sql.database import Database

__all__ = ["CODE_AND_TOKEN_GRACE", "SESSION_GRACE", "Pruned", "Pruner"]

log = logging.getLogger("bastion.storage.pruning")

#: How long a code or refresh token row stays after it expired.
CODE_AND_TOKEN_GRACE: Final = timedelta(days=1)
#: How long a finished session row stays.
SESSION_GRACE: Final = timedelta(days=7)
# The first pass waits this long after start (start-up stays quick).
_FIRST_PASS: Final = 60.0


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows one pass deleted."""

    codes: int
    refresh_tokens: int
    sessions: int


class Pruner:
    """Deletes spent rows of ``db``; ``idle_timeout`` is the sessions' (seconds)."""

    def __init__(
        self,
        db: Database,
        *,
        idle_timeout: float,
        interval: float = 3600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.idle_timeout = idle_timeout
        self.interval = interval
        self._clock = clock

    async def prune_once(self) -> Pruned:
        """One pass over every kind; what it deleted."""
        now = self._clock()
        codes = await self.db.codes.delete_expired(now - CODE_AND_TOKEN_GRACE)
        tokens = await self.db.refresh_tokens.delete_expired(now - CODE_AND_TOKEN_GRACE)
        sessions = await self.db.sessions.delete_finished(
            now - SESSION_GRACE,
            unused_since=now - SESSION_GRACE - timedelta(seconds=self.idle_timeout),
        )
        pruned = Pruned(codes, tokens, sessions)
        if codes or tokens or sessions:
            log.info(
                "pruned %d authorization codes, %d refresh tokens, %d sessions",
                codes,
                tokens,
                sessions,
            )
        return pruned

    async def run(self, stop: asyncio.Event) -> None:
        """Prune after a minute, then every ``interval``, until ``stop`` is set; a failed
        pass (the database away) is logged and tried again at the next."""
        wait = min(_FIRST_PASS, self.interval)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                return
            wait = self.interval
            try:
                await self.prune_once()
            except StorageError as exc:
                log.warning("pruning failed, retried in %.0f s: %s", self.interval, exc)
