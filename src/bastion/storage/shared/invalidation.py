"""Following a cache-invalidation channel until told to stop.

Services that cache stored records in memory (clients, API keys) publish the
id of every record they change on a shared-state channel; every process runs
:func:`follow_invalidations` to forget those records. When the subscription is
lost (Redis restarted), messages may have been missed, so the whole cache is
dropped and the subscription opened again after ``backoff`` seconds.

A cache that may skip a per-request check only while its invalidations are
followed (the gateway's verified-JWT cache) passes ``on_subscribed``: it is
told ``True`` once the subscription is open (after the whole cache was
dropped) and ``False`` as soon as it is lost or closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared.base import SharedState

log = logging.getLogger("bastion.storage.shared")


async def follow_invalidations(
    shared: SharedState,
    channel: str,
    invalidate: Callable[[str | None], None],
    stop: asyncio.Event,
    *,
    backoff: float = 1.0,
    on_subscribed: Callable[[bool], None] | None = None,
) -> None:
    """Call ``invalidate(id)`` for each message on ``channel`` until ``stop`` is set.

    ``invalidate(None)`` drops everything: on every (re)subscription, since
    messages published while unsubscribed are lost, and an empty message means
    "everything". ``on_subscribed`` (see the module docstring) is told when the
    subscription opens and when it is lost. Returns when ``stop`` is set; never
    raises for shared-state outages (they are logged and retried).
    """
    stopping = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            try:
                async with shared.subscribe(channel) as subscription:
                    invalidate(None)
                    with _following(on_subscribed):
                        while True:
                            receiving = asyncio.ensure_future(subscription.__anext__())
                            try:
                                done, _ = await asyncio.wait(
                                    {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                                )
                            finally:
                                # Also when this task is cancelled: a receiver left pending
                                # would end in StopAsyncIteration once the subscription
                                # closes, an exception nobody retrieves.
                                if not receiving.done():
                                    receiving.cancel()
                            if receiving not in done:
                                return
                            try:
                                message = receiving.result()
                            except StopAsyncIteration:
                                break
                            invalidate(message.decode("utf-8", "replace") or None)
            except SharedStateUnavailableError as error:
                invalidate(None)
                log.warning("%s: cache invalidation lost (%s); resubscribing", channel, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), backoff)
    finally:
        stopping.cancel()


@contextlib.contextmanager
def _following(on_subscribed: Callable[[bool], None] | None) -> Iterator[None]:
    """Tell ``on_subscribed`` True now and False when the subscription ends, however it ends."""
    if on_subscribed is not None:
        on_subscribed(True)
    try:
        yield
    finally:
        if on_subscribed is not None:
            on_subscribed(False)
