"""Load shedding: an adaptive concurrency limit per upstream (AIMD, as Netflix concurrency-limits).

Each route's upstream gets a limit on requests in flight. Responses answered
within ``target_latency`` raise it additively (+1 per limit's worth of fast
responses); a slower response (or an upstream failure) cuts it
multiplicatively (times ``backoff``, at most once per ``target_latency`` so one
slow wave does not collapse it to the floor). A request arriving while the
limit is reached is *shed* — refused with 503 ``overloaded`` and
``Retry-After`` before it reaches the upstream — so an overwhelmed upstream
sees fewer requests, its latency recovers, and the latency of the admitted
requests stays bounded instead of growing with the queue.

Everything runs on one event loop: no locks. With ``serve_native``, the limiter
of each route is the native data plane's (``bastion._native.shed_acquire``), so
requests the native core serves and those it defers here hold slots of one limit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Final

from bastion import _native
from bastion.errors import ServiceUnavailableError
from bastion.gateway.errors import GatewayError

__all__ = ["AdaptiveConcurrency", "LoadShedder", "OverloadedError"]


class OverloadedError(GatewayError, ServiceUnavailableError):
    """The route's upstream is at its adaptive concurrency limit: shed (503, ``Retry-After``).

    A ServiceUnavailableError: shedding is deliberate, not logged as a failure per request.
    """

    code = "overloaded"
    status = 503
    title = "Service unavailable"
    retry_after = 1


class AdaptiveConcurrency:
    """One upstream's AIMD concurrency limit (``limit``) and requests in flight (``inflight``)."""

    def __init__(
        self,
        *,
        initial: int = 20,
        minimum: int = 1,
        maximum: int = 1000,
        target_latency: float = 0.5,
        backoff: float = 0.9,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(
                f"need 1 <= minimum <= initial <= maximum, not {minimum}/{initial}/{maximum}"
            )
        if not 0 < backoff < 1:
            raise ValueError(f"backoff must be between 0 and 1, not {backoff!r}")
        if target_latency <= 0:
            raise ValueError(f"target_latency must be > 0 seconds, not {target_latency!r}")
        self.limit = float(initial)
        self.minimum = minimum
        self.maximum = maximum
        self.target_latency = target_latency
        self.backoff = backoff
        self.inflight = 0
        self.max_inflight = 0
        self.shed = 0
        self._clock = clock
        self._last_cut = -float("inf")

    def try_acquire(self) -> bool:
        """Take a slot if one is free (``True``), else count a shed request (``False``)."""
        if self.inflight >= int(self.limit):
            self.shed += 1
            return False
        self.inflight += 1
        if self.inflight > self.max_inflight:
            self.max_inflight = self.inflight
        return True

    def release(self, latency: float, *, failed: bool = False) -> None:
        """Give the slot back and adapt the limit to how the request went."""
        self.inflight -= 1
        now = self._clock()
        if failed or latency > self.target_latency:
            if now - self._last_cut >= self.target_latency:
                self._last_cut = now
                self.limit = max(float(self.minimum), self.limit * self.backoff)
        elif self.inflight * 2 >= int(self.limit):
            # Only grow while the limit is actually used: an idle upstream says nothing.
            self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)


_MAX_ROUTES: Final = 10_000


class LoadShedder:
    """An :class:`AdaptiveConcurrency` per route, built on first use with shared settings.

    ``serve_native``: the native data plane's limiter of each route instead (one
    limit for the requests of both planes; :attr:`routes` stays empty).
    """

    def __init__(self, *, serve_native: bool = False, **settings: float) -> None:
        self.settings = settings
        self.serve_native = serve_native
        self.routes: dict[str, AdaptiveConcurrency] = {}

    def for_route(self, name: str) -> AdaptiveConcurrency:
        """The limiter of route ``name`` (routes come from configuration: few)."""
        found = self.routes.get(name)
        if found is None:
            if len(self.routes) >= _MAX_ROUTES:
                raise ValueError("too many routes for the load shedder")
            found = AdaptiveConcurrency(**self.settings)  # type: ignore[arg-type]
            self.routes[name] = found
        return found

    @asynccontextmanager
    async def admit(self, route: str) -> AsyncIterator[None]:
        """Hold a slot of ``route``'s upstream for the block; OverloadedError (503) when full.

        An exception from the block counts as a failure (the limit is cut).
        """
        if self.serve_native:
            async with self._admit_native(route):
                yield
            return
        limiter = self.for_route(route)
        if not limiter.try_acquire():
            raise OverloadedError("The upstream is overloaded; retry shortly.")
        started = time.monotonic()
        failed = True
        try:
            yield
            failed = False
        finally:
            limiter.release(time.monotonic() - started, failed=failed)

    @asynccontextmanager
    async def _admit_native(self, route: str) -> AsyncIterator[None]:
        settings = self.settings
        slot = _native.shed_acquire(
            route,
            int(settings.get("initial", 20)),
            int(settings.get("minimum", 1)),
            int(settings.get("maximum", 1000)),
            float(settings.get("target_latency", 0.5)),
            float(settings.get("backoff", 0.9)),
        )
        if slot is None:
            raise OverloadedError("The upstream is overloaded; retry shortly.")
        failed = True
        try:
            yield
            failed = False
        finally:
            slot.finish(failed)
