"""Rate limiter backends: in-process (one node) and Redis (every node sharing it).

A request is checked against several limits at once (per key, subject, IP,
route …). It is admitted only if every limit admits it, and a refused request
consumes nothing on any limit: a client hammering one limit cannot drain
another. Both backends evaluate :func:`bastion.ratelimit.gcra.decide` on integer
microseconds, so they agree exactly.

- :class:`MemoryLimiter` is exact within one process: its native store decides a
  request's buckets under one lock (shared with the native front); a check never awaits
  between reading and writing its TATs, so concurrent tasks cannot interleave.
- :class:`RedisLimiter` runs one Lua script per request (EVALSHA, re-loaded on
  NOSCRIPT) that reads every TAT, decides, and writes all or nothing, using the
  Redis server's clock, so the nodes' clocks do not matter.

What a limit does while Redis is unreachable (its ``fail`` mode: refuse with 503, or
decide this node's share locally) is the native limit step's (``native/src/limit/outage.rs``).
"""

from __future__ import annotations

import asyncio
import importlib.resources
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from bastion import _native
from bastion.ratelimit.gcra import Decision, Limit, decide
from bastion.storage.errors import SharedStateUnavailableError

if TYPE_CHECKING:  # redis-py loads only for shared: redis:// (storage/shared/__init__.py)
    from bastion.storage.shared import RedisSharedState

Check = tuple[str, Limit]
"""One limit to apply to a request: the bucket's key and its limit."""

DEFAULT_NAMESPACE: Final = "ratelimit:"
DEFAULT_TIMEOUT: Final = 1.0


@dataclass(frozen=True, slots=True)
class LimitState:
    """One limit's decision for one request."""

    key: str
    limit: Limit
    decision: Decision


@dataclass(frozen=True, slots=True)
class Result:
    """The decision for a request over all its limits.

    ``allowed`` is true only if every limit admitted it. When refused, the
    states of the limits that would have admitted it report their unchanged
    state (nothing was consumed).
    """

    allowed: bool
    states: tuple[LimitState, ...]

    @property
    def retry_after(self) -> float:
        """Seconds until the request could be admitted (0.0 when admitted)."""
        return max((s.decision.retry_after for s in self.states), default=0.0)

    @property
    def remaining(self) -> int | None:
        """The smallest ``remaining`` over the limits; ``None`` without limits."""
        return min((s.decision.remaining for s in self.states), default=None)


class Limiter(Protocol):
    """Checks a request against several limits together."""

    async def check(self, checks: Sequence[Check], *, cost: int = 1) -> Result:
        """Admit the request (consuming ``cost`` on every limit) only if all limits admit it.

        Raises ValueError for duplicate keys or a negative cost, and
        SharedStateUnavailableError when a shared backend cannot be reached.
        """
        ...


def _validate(checks: Sequence[Check], cost: int) -> None:
    # type() rather than isinstance: a bool is an int but not a cost.
    if type(cost) is not int or cost < 0:
        raise ValueError(f"cost must be a non-negative integer, not {cost!r}")
    if len(checks) > 1:
        keys = [key for key, _ in checks]
        if len(set(keys)) != len(keys):
            # Two limits on one key would overwrite each other's TAT.
            raise ValueError(f"each limit of a request needs its own key, got {keys!r}")


def evaluate(checks: Sequence[Check], tats: Sequence[int | None], now: int, cost: int) -> Result:
    """Decide a request from its limits' current TATs at ``now`` (µs), all or nothing.

    The new TATs to store are the states' ``decision.new_tat`` (unchanged TATs
    when refused).
    """
    # Plain loops, no generators: this runs for every limited request (hot path).
    decisions: list[Decision] = []
    allowed = True
    for (_, limit), tat in zip(checks, tats, strict=True):
        decision = decide(tat, now, limit, cost)
        if not decision.allowed:
            allowed = False
        decisions.append(decision)
    if not allowed:
        # Nothing is consumed: report the admitting limits as they stand.
        decisions = [
            d if not d.allowed else decide(tat, now, limit, 0)
            for d, (_, limit), tat in zip(decisions, checks, tats, strict=True)
        ]
    states = tuple(
        [LimitState(key, limit, d) for (key, limit), d in zip(checks, decisions, strict=True)]
    )
    return Result(allowed, states)


class MemoryLimiter:
    """The in-process limiter: exact across every thread of this process.

    The TATs live in a native store (``bastion._native.LimitStore``, a sharded
    map in Rust) that reads, decides and writes a request's buckets under one
    lock; keys whose TAT has passed are swept regularly there, so memory stays
    proportional to the keys active within their limits' windows.

    ``clock`` returns microseconds (monotonic); injectable for tests. Without
    one the store's own monotonic clock decides. ``serve_native`` installs the
    store as the one the native front decides on, so requests the native path
    serves and requests it defers to Python draw from one budget (the
    runtime's gateway limiter does this; it requires the store's clock).
    """

    def __init__(
        self, *, clock: Callable[[], int] | None = None, serve_native: bool = False
    ) -> None:
        if serve_native and clock is not None:
            raise ValueError("a limiter shared with the native front must use its clock")
        self._clock = clock
        self._store = _native.LimitStore()
        if serve_native:
            self._store.install()

    def __len__(self) -> int:
        """How many keys are held (swept ones excluded)."""
        return len(self._store)

    async def check(self, checks: Sequence[Check], *, cost: int = 1) -> Result:
        """See :meth:`Limiter.check`; raises ValueError for duplicate keys or a bad cost."""
        return self.check_now(checks, cost=cost)

    def check_now(self, checks: Sequence[Check], *, cost: int = 1) -> Result:
        """The synchronous check: the store reads, decides and writes under one lock."""
        clock = self._clock
        if cost == 1 and len(checks) == 1 and type(cost) is int:
            # The common request (one limit, cost 1) without the general bookkeeping:
            # the same decide() on the TAT the store held before (hot path).
            (key, limit) = checks[0]
            _, now, tat = self._store.take_one(
                key, limit.interval_us, limit.tolerance_us, None if clock is None else clock()
            )
            decision = decide(tat, now, limit, 1)
            return Result(decision.allowed, (LimitState(key, limit, decision),))
        _validate(checks, cost)
        if not checks:
            return Result(True, ())
        admitted, now, tats = self._store.take(
            [key for key, _ in checks],
            [limit.interval_us for _, limit in checks],
            [limit.tolerance_us for _, limit in checks],
            cost,
            None if clock is None else clock(),
        )
        result = evaluate(checks, tats, now, cost)
        if result.allowed != admitted:  # pragma: no cover - same formula on both sides
            raise RuntimeError("the native limit store disagreed with the GCRA decision")
        return result


# KEYS: the buckets. ARGV[1]: cost; ARGV[2i], ARGV[2i+1]: interval and tolerance
# (µs) of KEYS[i]. Returns {admitted 0|1, now µs, TAT_1 .. TAT_n} with each TAT
# raised to now; Python re-derives remaining/reset from them with the same
# integer formula. string.format('%d') because tostring() would print 1.7e+15.
# The script lives in gcra.lua, which the native limiter compiles in (include_str!): one
# text, one SHA, so Python and native nodes share Redis's script cache.
_GCRA_SCRIPT: Final = (
    importlib.resources.files("bastion.ratelimit").joinpath("gcra.lua").read_text("utf-8")
)


class RedisLimiter:
    """The Redis limiter: exact across every node sharing the Redis and key prefix.

    One round trip per request whatever the number of limits. Keys are
    ``state.namespaced(namespace + key)`` and expire (PX) when their bucket is
    full again, so idle keys vanish. The keys of one request must live on one
    Redis node (no Redis Cluster slot spreading).
    """

    def __init__(
        self,
        state: RedisSharedState,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._state = state
        self._namespace = namespace
        self._timeout = timeout
        self._script = state.client.register_script(_GCRA_SCRIPT)
        # One pipelined connection for the per-request script (storage/shared/resp.py:
        # ~12 µs of CPU per call instead of redis-py's ~90); None on rediss:// URLs.
        self._hot = state.open_hot_path(timeout, "rate limit script")

    def redis_key(self, key: str) -> str:
        """The full Redis key holding the TAT of bucket ``key``."""
        return self._state.namespaced(self._namespace + key)

    async def check(self, checks: Sequence[Check], *, cost: int = 1) -> Result:
        """See :meth:`Limiter.check`.

        Raises ValueError for duplicate keys or a bad cost, and
        SharedStateUnavailableError (within ``timeout``) when Redis cannot be
        reached or fails.
        """
        _validate(checks, cost)
        if not checks:
            return Result(True, ())
        keys = [self.redis_key(key) for key, _ in checks]
        args: list[int] = [cost]
        for _, limit in checks:
            args += (limit.interval_us, limit.tolerance_us)
        reply: Any
        hot = self._hot
        if hot is not None:
            script = self._script
            reply = await hot.evalsha(script.sha, _GCRA_SCRIPT, keys, args)
        else:
            with self._state.translate_errors("rate limit script"):
                async with asyncio.timeout(self._timeout):
                    reply = await self._script(keys=keys, args=args)
        admitted, now, *tats = (int(value) for value in reply)
        result = evaluate(checks, tats, now, cost)
        if result.allowed != bool(admitted):  # pragma: no cover - same formula on both sides
            raise SharedStateUnavailableError(
                f"Redis at {self._state.url} disagreed with the local GCRA decision"
            )
        return result
