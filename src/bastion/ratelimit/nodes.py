"""How many bastion nodes share the limiter: a heartbeat over the shared state.

When Redis is unreachable, limits that fail open are decided by each node
alone with its share of the limit (``limit ÷ node count``), so the nodes
together stay near the global limit. The count comes from this heartbeat:
time is cut into slots of ``interval`` seconds; in each slot every node
claims ``nodes:<slot>:<node id>`` once (``add``) and, the first time, adds
one to the counter ``nodes:<slot>`` (``incr``). A node reads the counter of
the previous, complete slot. Only ``add``/``incr``/``get`` are used: no key
scans, the same on every backend. The last count is kept through an outage —
that is when it is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from bastion import _native
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import SharedState

__all__ = ["NodeCount"]

log = logging.getLogger("bastion.ratelimit")

_NAMESPACE: Final = "ratelimit:nodes:"


class NodeCount:
    """This node's heartbeat and the last known number of live nodes (``count``, at least 1)."""

    def __init__(
        self,
        shared: SharedState,
        node_id: str,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be > 0 seconds, not {interval!r}")
        self.shared = shared
        self.node_id = node_id
        self.interval = interval
        self.count = 1
        self._clock = clock

    async def beat(self) -> int:
        """Announce this node for the current slot and refresh :attr:`count`; returns it.

        Raises SharedStateUnavailableError when the shared state is unreachable
        (``count`` is then left as it was).
        """
        slot = int(self._clock() // self.interval)
        ttl = self.interval * 3
        if await self.shared.add(f"{_NAMESPACE}{slot}:{self.node_id}", b"1", ttl=ttl):
            await self.shared.incr(f"{_NAMESPACE}{slot}", ttl=ttl)
        current = await self.shared.get(f"{_NAMESPACE}{slot}")
        previous = await self.shared.get(f"{_NAMESPACE}{slot - 1}")
        # The previous slot is complete; the current one covers a node that just started.
        seen = max(int(previous or 0), int(current or 0), 1)
        if seen != self.count:
            _native.limiter_nodes(seen)  # the native fail-open share divides by it too
        self.count = seen
        return seen

    async def run(self, stop: asyncio.Event) -> None:
        """Beat a few times per slot until ``stop`` is set (outages are logged, not raised)."""
        while not stop.is_set():
            try:
                await self.beat()
            except SharedStateUnavailableError as exc:
                log.debug("node heartbeat failed (keeping %d nodes): %s", self.count, exc)
            except Exception:  # never let the heartbeat die: the fallback depends on it
                log.exception("node heartbeat failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval / 3)
