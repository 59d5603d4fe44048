"""Per-API-key limits: the key's stored ``rate_limits`` and runtime overrides.

An API key may carry its own limits (``rate_limits`` on the key, e.g.
``[{"rate": "100/minute"}]``). They apply on every route the key calls, in
the same limiter call as the route's limits, each from the bucket
``"apikey:<id>:<label>"`` (shared by every route and node).

An operator can *override* a key's limits at runtime (``bastion limits set``
or ``PUT /admin/api/v1/keys/{id}/limits``) without touching the key: the
override is stored in ``settings_kv`` under ``ratelimit.override.key.<id>``,
which the change feed announces on the ``settings`` channel (:data:`OVERRIDES_CHANNEL`,
message: the setting's key) — also published there directly with Redis — and every
node keeps all overrides in memory (:class:`KeyLimitOverrides`), so the hot
path reads a dict and never the database. An override replaces the key's
stored limits; clearing it restores them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from bastion import _native
from bastion.errors import BastionError
from bastion.ratelimit.backends import Check, Limiter, Result
from bastion.ratelimit.gcra import Limit
from bastion.storage import feed
from bastion.storage.errors import NotFoundError
from bastion.storage.shared import SharedState
from bastion.storage.shared.invalidation import follow_invalidations

__all__ = [
    "KEY_BUCKET_PREFIX",
    "OVERRIDES_CHANNEL",
    "OVERRIDE_PREFIX",
    "InvalidKeyLimitError",
    "KeyLimitOverrides",
    "compile_key_limits",
    "describe",
    "key_checks",
    "limits_document",
    "parse_override",
    "usage",
]

log = logging.getLogger("bastion.ratelimit")

#: settings_kv key prefix of per-key overrides (followed by the key id).
OVERRIDE_PREFIX: Final = "ratelimit.override.key."
#: Shared-state channel announcing the id of a key whose override changed ("" = all).
OVERRIDES_CHANNEL: Final = feed.SETTINGS
#: Bucket prefix of per-key limits (followed by ``<id>:<label>``).
KEY_BUCKET_PREFIX: Final = "apikey:"

_MAX_LIMITS: Final = 20
_CACHE_MAX: Final = 4096
_compiled: dict[tuple[tuple[Any, Any], ...], tuple[Limit, ...]] = {}


def compile_key_limits(entries: Iterable[Mapping[str, Any]]) -> tuple[Limit, ...]:
    """The limits of stored ``rate_limits`` entries (``{"rate": "10/minute", "burst": 5}``).

    Memoised (the entries of a key rarely change, and this runs per request).
    Raises ValueError naming the entry when a rate or burst is invalid, or for
    more than 20 entries.
    """
    signature = tuple((entry.get("rate"), entry.get("burst")) for entry in entries)
    found = _compiled.get(signature)
    if found is not None:
        return found
    if len(signature) > _MAX_LIMITS:
        raise ValueError(f"at most {_MAX_LIMITS} limits per key, not {len(signature)}")
    limits: list[Limit] = []
    for index, (rate, burst) in enumerate(signature):
        try:
            limit = Limit.parse(str(rate) if rate is not None else "", burst=burst)
        except ValueError as exc:
            raise ValueError(f"limits[{index}]: {exc}") from None
        if limit not in limits:  # two equal limits would share one bucket anyway
            limits.append(limit)
    result = tuple(limits)
    if len(_compiled) >= _CACHE_MAX:
        _compiled.clear()
    _compiled[signature] = result
    return result


class InvalidKeyLimitError(BastionError):
    """An override's limits are not valid (400); the detail names the entry and the fix."""

    code = "invalid_rate_limit"
    status = 400
    title = "Invalid rate limit"


def parse_override(entries: Sequence[Mapping[str, Any]]) -> tuple[Limit, ...]:
    """Validate override entries (``[{"rate": "10/minute", "burst": 20}]``, at least one).

    Raises InvalidKeyLimitError naming the bad entry.
    """
    if not entries:
        raise InvalidKeyLimitError(
            'limits: give at least one limit such as {"rate": "100/minute"} '
            "(to remove the override, delete it)"
        )
    for index, entry in enumerate(entries):
        burst = entry.get("burst")
        if not isinstance(entry.get("rate"), str) or (
            burst is not None and (isinstance(burst, bool) or not isinstance(burst, int))
        ):
            raise InvalidKeyLimitError(
                f"limits[{index}]: rate must be a string like '100/minute' and burst a whole number"
            )
    try:
        return compile_key_limits(entries)
    except ValueError as exc:
        raise InvalidKeyLimitError(str(exc)) from None


def limits_document(limits: Sequence[Limit]) -> list[dict[str, Any]]:
    """``limits`` as the JSON the stores, CLI and admin API use: ``[{"rate", "burst"}]``."""
    return [{"rate": limit.label, "burst": limit.capacity} for limit in limits]


def _bucket(key_id: str, limit: Limit) -> str:
    burst = "" if limit.capacity == limit.rate else f"~{limit.capacity}"
    return f"{KEY_BUCKET_PREFIX}{key_id}:{limit.label}{burst}"


def key_checks(key_id: str, limits: Sequence[Limit]) -> list[Check]:
    """The limiter checks of a key's limits (one bucket per distinct limit, across routes).

    The bucket names the limit, so changing a key's limit starts it on a fresh bucket.
    """
    return [(_bucket(key_id, limit), limit) for limit in limits]


async def usage(limiter: Limiter, key_id: str, limits: Sequence[Limit]) -> list[dict[str, Any]]:
    """The current state of each of a key's limits, consuming nothing.

    One entry per limit: ``rate``, ``burst``, ``remaining`` (requests admitted
    right now), ``reset`` (seconds until the bucket is full). Raises
    SharedStateUnavailableError when a shared limiter is unreachable.
    """
    if not limits:
        return []
    result: Result = await limiter.check(key_checks(key_id, limits), cost=0)
    return [
        {
            "rate": state.limit.label,
            "burst": state.limit.capacity,
            "remaining": state.decision.remaining,
            "reset": round(state.decision.reset_after, 3),
        }
        for state in result.states
    ]


async def describe(
    key_id: str,
    stored: Sequence[Mapping[str, Any]],
    overrides: KeyLimitOverrides,
    limiter: Limiter | None,
) -> dict[str, Any]:
    """A key's effective limits and current usage (what ``limits show`` and the API print).

    ``source`` is ``override``, ``key`` (its stored ``rate_limits``) or
    ``none``; ``usage`` is ``None`` when ``limiter`` is ``None`` (the
    in-process state of a server is not visible from another process).
    Raises SharedStateUnavailableError when a shared limiter is unreachable.
    """
    override = overrides.get(key_id)
    own = compile_key_limits(stored)
    effective = override if override is not None else own
    source = "override" if override is not None else ("key" if own else "none")
    return {
        "key_id": key_id,
        "source": source,
        "key_limits": limits_document(own),
        "override": limits_document(override) if override is not None else None,
        "limits": limits_document(effective),
        "usage": None if limiter is None else await usage(limiter, key_id, effective),
    }


class KeyLimitOverrides:
    """Every per-key override, kept in memory and in step with the database on every node.

    :meth:`get` is the hot path (a dict lookup). :meth:`set` / :meth:`clear`
    store the change and announce it; :meth:`run` follows the announcements
    (and reloads everything after a lost subscription). Methods touching the
    database raise its storage errors.
    """

    def __init__(self, db: Any, shared: SharedState, *, native: bool = False) -> None:
        self.db = db
        self.shared = shared
        self._limits: dict[str, tuple[Limit, ...]] = {}
        # Mirror every change into the native limit step (the runtime's overrides do).
        self.native = native

    def get(self, key_id: str) -> tuple[Limit, ...] | None:
        """The override of ``key_id`` (``None``: the key's own limits apply)."""
        return self._limits.get(key_id)

    def __len__(self) -> int:
        return len(self._limits)

    async def load(self) -> None:
        """Read every override from the database (replacing what is held)."""
        loaded: dict[str, tuple[Limit, ...]] = {}
        for entry in await self.db.settings.list():
            if entry.key.startswith(OVERRIDE_PREFIX):
                key_id = entry.key[len(OVERRIDE_PREFIX) :]
                parsed = self._parse(entry.key, entry.value)
                if parsed is not None:
                    loaded[key_id] = parsed
        self._limits = loaded
        if self.native:
            _native.key_limit_overrides_replace(
                json.dumps({k: limits_document(v) for k, v in loaded.items()})
            )

    async def reload(self, key_id: str) -> None:
        """Read the override of one key from the database (dropped when none is stored)."""
        entry = await self.db.settings.find(OVERRIDE_PREFIX + key_id)
        parsed = None if entry is None else self._parse(entry.key, entry.value)
        if parsed is None:
            self._limits.pop(key_id, None)
        else:
            self._limits[key_id] = parsed
        self._mirror(key_id)

    def _mirror(self, key_id: str) -> None:
        if self.native:
            found = self._limits.get(key_id)
            document = None if found is None else json.dumps(limits_document(found))
            _native.key_limit_override_set(key_id, document)

    @staticmethod
    def _parse(name: str, value: Any) -> tuple[Limit, ...] | None:
        try:
            entries = value.get("limits") if isinstance(value, Mapping) else None
            if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
                raise ValueError("expected {'limits': [{'rate': ..., 'burst': ...}]}")
            return compile_key_limits(entries)
        except ValueError as exc:
            # Stored by an older or hand-edited entry: ignore it loudly, keep the key's own.
            log.warning("ignoring rate limit override %s: %s", name, exc)
            return None

    async def set(self, key_id: str, limits: Sequence[Limit]) -> None:
        """Store and announce an override replacing ``key_id``'s limits."""
        await self.db.settings.set(OVERRIDE_PREFIX + key_id, {"limits": limits_document(limits)})
        self._limits[key_id] = tuple(limits)
        self._mirror(key_id)
        await self._announce(key_id)

    async def clear(self, key_id: str) -> bool:
        """Remove ``key_id``'s override; ``True`` if there was one."""
        try:
            await self.db.settings.delete(OVERRIDE_PREFIX + key_id)
        except NotFoundError:
            existed = False
        else:
            existed = True
        self._limits.pop(key_id, None)
        self._mirror(key_id)
        await self._announce(key_id)
        return existed

    async def _announce(self, key_id: str) -> None:
        try:
            await self.shared.publish(OVERRIDES_CHANNEL, (OVERRIDE_PREFIX + key_id).encode())
        except Exception as exc:  # stored; other nodes catch up on their next resubscription
            log.warning("rate limit override of %s stored but not announced: %s", key_id, exc)

    def _invalidated(self, setting: str | None) -> None:
        # Called from the subscription loop: reload asynchronously, never block it.
        if setting is not None and not setting.startswith(OVERRIDE_PREFIX):
            return  # another runtime setting
        key_id = None if setting is None else setting[len(OVERRIDE_PREFIX) :]
        task = asyncio.ensure_future(self.load() if key_id is None else self.reload(key_id))
        task.add_done_callback(_log_failure)

    async def run(self, stop: asyncio.Event, *, backoff: float = 1.0) -> None:
        """Follow override announcements until ``stop`` is set (never raises for outages)."""
        await follow_invalidations(
            self.shared, OVERRIDES_CHANNEL, self._invalidated, stop, backoff=backoff
        )


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("reloading rate limit overrides failed: %s", task.exception())
