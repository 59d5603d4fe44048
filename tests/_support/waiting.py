"""Waiting for a state instead of sleeping for it.

A test that sleeps a fixed time for something to happen (a subscription to open, a change
to reach another node, a request to reach the upstream) is slow where the state arrives
at once and flaky where a loaded machine (the parallel suite on two cores) takes longer.
:func:`wait_until` and :func:`wait_until_async` poll the condition instead, return as
soon as it holds and fail with what was awaited once the deadline passes.

Sleeps that pace a test (let a TTL or a refill interval pass, wait a bounded time for
something that must *not* happen) stay sleeps: there is no state to poll.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: Generous: a condition that holds returns at once; only a failing test waits this long.
TIMEOUT = 10.0
INTERVAL = 0.05


def wait_until(
    condition: Callable[[], T],
    what: str = "the condition",
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Raises:
        AssertionError: ``condition`` was still falsy after ``timeout`` seconds (the message
            names ``what`` was awaited and the last value).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s (last: {value!r})")
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], Awaitable[T] | T],
    what: str = "the condition",
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
) -> T:
    """:func:`wait_until` on an event loop: ``condition`` may be a coroutine function.

    Raises:
        AssertionError: as :func:`wait_until`.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s (last: {value!r})")
        await asyncio.sleep(interval)
