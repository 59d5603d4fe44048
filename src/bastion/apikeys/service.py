"""The API key lifecycle and the hot-path verification of presented keys.

:class:`ApiKeyService` is what the CLI, the admin API, the gateway's
``api_key`` authenticator, the leak-report endpoint and the RFC 8693 token
exchange use. It creates keys (returned once, stored as a digest plus a
display prefix), changes, rotates, revokes, disables and deletes them, and
verifies presented keys.

Verification (:meth:`ApiKeyService.verify`) is built for the gateway path:

1. the format and checksum are checked offline (:func:`bastion.crypto.parse_api_key`)
   — a mistyped or made-up key never reaches the database;
2. the key's digest is looked up in an in-memory cache (positive answers for
   :data:`POSITIVE_TTL` seconds, "no such key" for :data:`NEGATIVE_TTL`,
   bounded in size); only a miss asks the database (one indexed equality
   query on the digest column — a lookup by the digest of a high-entropy secret
   reveals nothing usable about the secret, so no constant-time compare is needed);
3. revocation, disabling, expiry and the end of a rotation grace period are
   checked on every call against the current time, so a key stops working by
   itself at its deadline, cached or not;
4. the key's IP allow-list (CIDRs) is checked;
5. the use (time, client IP) is remembered in memory and written to the
   database in batches by :meth:`ApiKeyService.run` — never one write per request.

Every mutation drops the cached entry here at once and, through the shared
state channel ``"api-keys"``, in every other process running :meth:`run`; so
revocation and disabling take effect on the next request on every node.

A key owned by a bastion user (``owner_type: user``) lives only while that user is
enabled: while the user is disabled the key is refused as ``disabled`` (its stored
record is not changed, so enabling the user gives the key back); deleting the user
revokes it (``bastion.users``). Each node hears of the user's change on the change
feed's ``users`` channel (:meth:`ApiKeyService.owner_changed`) and drops the user's
keys from its caches and the native core's, so the next request reads the owner again.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import ipaddress
import logging
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from bastion.apikeys.errors import (
    AmbiguousApiKeyError,
    ApiKeyIPNotAllowedError,
    ApiKeySpecError,
    ApiKeyStateError,
    InvalidApiKeyError,
)
from bastion.apikeys.spec import CHECKS, ApiKeySpec, changed_values, new_values
from bastion.apikeys.state import api_key_refusal
from bastion.credentials.cache import CachedLookup, ChangeChannel, TtlCache
from bastion.credentials.validation import storable
from bastion.crypto import ApiKeyFormatError, api_key_digest, generate_api_key, parse_api_key
from bastion.crypto.apikeys import MAX_API_KEY_LENGTH
from bastion.storage import ApiKey, Database, NotFoundError, Page, feed
from bastion.storage.models import utcnow
from bastion.storage.shared import SharedState

__all__ = [
    "API_KEYS_CHANNEL",
    "FLUSH_INTERVAL",
    "NEGATIVE_TTL",
    "POSITIVE_TTL",
    "ApiKeyService",
    "CacheMirror",
]

log = logging.getLogger("bastion.apikeys")

#: Shared-state channel on which ids of keys whose cached record is stale are published
#: (an empty message: forget everything).
API_KEYS_CHANNEL: Final = feed.API_KEYS

#: Seconds a found key is served from memory before the database is asked again.
#: Revocation does not wait for this: it is pushed through the shared state.
POSITIVE_TTL: Final = 30.0
#: Seconds "no such key" is remembered (a key created meanwhile elsewhere is unknown
#: here for at most this long — it was never presented before, so nothing waits on it).
NEGATIVE_TTL: Final = 5.0
#: Bounds of the caches: memory must not grow with the number of keys an attacker sends.
POSITIVE_CACHE_MAX: Final = 100_000
NEGATIVE_CACHE_MAX: Final = 10_000
#: Seconds between flushes of the last-used times by :meth:`ApiKeyService.run`.
FLUSH_INTERVAL: Final = 10.0
#: Most keys one leak report may carry.
MAX_LEAK_REPORT: Final = 1000

_MAX_PREFIX_MATCHES = 5
_ENV_OF_PREFIX = re.compile(r"bst_([a-z][a-z0-9]{0,9})_")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CacheMirror(Protocol):
    """A cache kept in step with the service's own (:meth:`ApiKeyService.mirror`)."""

    def found(self, key: ApiKey, ttl: float) -> None:
        """``key`` was just read from the database; trust it for ``ttl`` seconds at most."""

    def refused(self, digest: str, ttl: float) -> None:
        """The key with stored ``digest`` is refused (no such key, or a format that can never
        be valid); remember that for ``ttl`` seconds at most."""

    def invalidated(self, key_id: str | None) -> None:
        """Forget ``key_id`` (every key when ``None``); forget every refusal either way."""

    def used(self) -> Iterable[tuple[str, float]]:
        """The keys used through the mirror since the last call: ``(key id, Unix time)``."""
        ...


class _Entry:
    """A found key with its IP allow-list parsed once (what :meth:`ApiKeyService.verify` checks)."""

    __slots__ = ("key", "networks")

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(cidr, strict=False) for cidr in key.ip_allow
        )


def _ip_allowed(networks: tuple[_Network, ...], ip: str | None) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


# ---------------------------------------------------------------------------
# the service


class ApiKeyService:
    """API keys: lifecycle, leak response and hot-path verification.

    ``settings`` is bastion's :class:`~bastion.settings.Settings` (section
    ``api_keys``). Every method may raise the storage errors
    (``DatabaseUnavailableError`` …) of the database it works on.
    """

    def __init__(self, db: Database, settings: Any, shared: SharedState) -> None:
        self.db = db
        self.settings = settings
        self.shared = shared
        section = settings.api_keys
        self._environment: str | None = section.environment
        self._pepper: bytes | None = (
            section.pepper.get_secret_value().encode("utf-8") if section.pepper else None
        )
        self._default_grace = float(section.default_grace)
        # digest -> found key; digest -> "no such key"; key id -> its digest here.
        self._found: TtlCache[str, _Entry] = TtlCache(POSITIVE_CACHE_MAX)
        self._unknown: TtlCache[str, bool] = TtlCache(NEGATIVE_CACHE_MAX)
        self._digest_of: dict[str, str] = {}
        # Reads by id for tokens exchanged from a key (get_cached).
        self._by_id: CachedLookup[str, ApiKey] = CachedLookup(
            self._get_judged, ttl=lambda: POSITIVE_TTL, max_entries=POSITIVE_CACHE_MAX
        )
        # Bumped by every invalidation: a read out meanwhile may predate it (not kept).
        self._epoch = 0
        self._changes = ChangeChannel(
            shared, API_KEYS_CHANNEL, self.invalidate, noun="API key", log=log
        )
        # key id -> (Unix time, IP) of its latest use, written in batches.
        self._last_used: dict[str, tuple[float, str | None]] = {}
        # Caches mirroring this one (the native data plane's): told of every fill and drop.
        self._mirrors: list[CacheMirror] = []

    def mirror(self, mirror: CacheMirror) -> None:
        """Tell ``mirror`` of every record this cache fills and every key it forgets.

        What :mod:`bastion.gateway.native_push` uses to keep the native API key
        cache in step: a record is mirrored only when no invalidation arrived
        while it was read, and every :meth:`invalidate` reaches it at once.
        """
        self._mirrors.append(mirror)

    def digest(self, key: str) -> str:
        """The stored form of ``key`` under this service's pepper."""
        return api_key_digest(key, pepper=self._pepper)

    # -- reads ------------------------------------------------------------

    async def get(self, key_id: str) -> ApiKey:
        """The key (any state). Raises ``NotFoundError``."""
        return await self.db.api_keys.get(self._known_id(key_id))

    async def resolve(self, ref: str) -> ApiKey:
        """The key named by ``ref``: its id, or its display prefix (``bst_AbC123``, as
        listings show it; a trailing ``…`` is ignored).

        Raises ``NotFoundError`` (neither), or :class:`AmbiguousApiKeyError` when
        the prefix is shared by several keys (the error lists their ids).
        """
        try:
            return await self.get(ref)
        except NotFoundError:
            pass
        prefix = ref.strip().removesuffix("…") if isinstance(ref, str) else ""
        if not prefix.startswith("bst_") or not storable(prefix) or len(prefix) > 64:
            raise NotFoundError(f"API key {str(ref)[:60]!r} does not exist") from None
        found = await self.db.api_keys.find_by_prefix(prefix, limit=_MAX_PREFIX_MATCHES)
        if not found:
            raise NotFoundError(f"no API key has the id or display prefix {prefix[:60]!r}")
        if len(found) > 1:
            ids = ", ".join(key.id for key in found)
            more = " …" if len(found) == _MAX_PREFIX_MATCHES else ""
            raise AmbiguousApiKeyError(
                f"display prefix {prefix!r} matches {len(found)}{'+' * bool(more)} API keys "
                f"({ids}{more}): give the key's id"
            )
        return found[0]

    async def get_cached(self, key_id: str) -> ApiKey:
        """The key (any state) by id, from memory for up to :data:`POSITIVE_TTL` seconds.

        What the verifiers of tokens exchanged from a key read on every
        verification (:func:`bastion.apikeys.token_exchange.with_api_keys`, the
        gateway's ``jwt`` method): no database read per token, yet every change
        to the key drops the entry here and, through ``"api-keys"``, on every
        node. Raises ``NotFoundError`` (not cached) or the storage errors.
        """
        return await self._by_id.get(key_id)

    # -- lifecycle --------------------------------------------------------

    async def create(self, spec: ApiKeySpec, *, now: datetime | None = None) -> tuple[ApiKey, str]:
        """Create a key; return the record and the full key — shown here once, never again.

        Raises:
            ApiKeySpecError: the spec is invalid (the error names the field and the fix).
        """
        at = now or utcnow()
        values = new_values(spec, at)
        record, secret = await self._store_new(values, self._environment, at)
        log.info("API key %s (%s) created", record.id, record.prefix)
        return record, secret

    async def update(self, key_id: str, **changes: Any) -> ApiKey:
        """Change the named members and return the updated key.

        Updatable: name, scopes, routes, expires_at (``None`` removes it),
        rate_limits, ip_allow, metadata, disabled. The owner cannot change.

        Raises:
            NotFoundError: no such key.
            ApiKeySpecError: an unknown member or an invalid value.
        """
        delta = changed_values(changes)
        key_id = self._known_id(key_id)
        if not delta:
            return await self.db.api_keys.get(key_id)
        record = await self.db.api_keys.update(key_id, **delta)
        await self._invalidate(record)
        log.info("API key %s updated: %s", key_id, ", ".join(sorted(delta)))
        return record

    async def rotate(
        self, key_id: str, *, grace: float | None = None, now: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """Issue a successor key with the same metadata; return it and its full key (once).

        The old key keeps working for ``grace`` seconds (default
        ``api_keys.default_grace``; 0 ends it at once), then stops by itself.

        Raises:
            NotFoundError: no such key.
            ApiKeySpecError: ``grace`` is negative, not finite or above 10 years.
            ApiKeyStateError: the key is revoked, or was already rotated (rotate its
                successor instead).
        """
        grace = self._default_grace if grace is None else CHECKS.grace(grace)
        at = now or utcnow()
        old = await self.db.api_keys.get(self._known_id(key_id))
        if old.revoked_at is not None:
            raise ApiKeyStateError(f"API key {old.id} is revoked; create a new key instead")
        if old.grace_until is not None:
            raise ApiKeyStateError(
                f"API key {old.id} was already rotated; rotate its successor instead"
            )
        values: dict[str, Any] = {
            "name": old.name,
            "owner_type": old.owner_type,
            "owner_id": old.owner_id,
            "scopes": old.scopes,
            "routes": old.routes,
            "expires_at": old.expires_at,
            "rate_limits": old.rate_limits,
            "ip_allow": old.ip_allow,
            "metadata": old.metadata,
            "disabled": old.disabled,
            "rotated_from": old.id,
        }
        env = _ENV_OF_PREFIX.match(old.prefix)
        successor, secret = await self._store_new(values, env[1] if env else None, at)
        ends = at + timedelta(seconds=grace)
        updated = await self.db.api_keys.update(old.id, grace_until=ends, updated_at=at)
        await self._invalidate(updated)
        log.info(
            "API key %s rotated to %s (%s), grace %gs",
            old.id,
            successor.id,
            successor.prefix,
            grace,
        )
        return successor, secret

    async def revoke(self, key_id: str, *, now: datetime | None = None) -> ApiKey:
        """Revoke the key for good (idempotent: a revoked key keeps its first revocation time).

        Raises:
            NotFoundError: no such key.
        """
        current = await self.db.api_keys.get(self._known_id(key_id))
        if current.revoked_at is not None:
            return current
        at = now or utcnow()
        record = await self.db.api_keys.update(current.id, revoked_at=at, updated_at=at)
        await self._invalidate(record)
        log.warning("API key %s (%s) revoked", record.id, record.prefix)
        return record

    async def disable(self, key_id: str) -> ApiKey:
        """Disable the key until :meth:`enable`. Raises ``NotFoundError``."""
        record = await self.db.api_keys.update(self._known_id(key_id), disabled=True)
        await self._invalidate(record)
        log.info("API key %s disabled", record.id)
        return record

    async def enable(self, key_id: str) -> ApiKey:
        """Enable a disabled key again (a revoked key stays revoked). Raises ``NotFoundError``."""
        record = await self.db.api_keys.update(self._known_id(key_id), disabled=False)
        await self._invalidate(record)
        log.info("API key %s enabled", record.id)
        return record

    async def delete(self, key_id: str) -> None:
        """Delete the key. Raises ``NotFoundError``."""
        key_id = self._known_id(key_id)
        await self.db.api_keys.delete(key_id)
        self._last_used.pop(key_id, None)
        await self._changes.changed(key_id)
        log.info("API key %s deleted", key_id)

    # -- verification (the hot path) ----------------------------------------

    async def verify(self, key: str, *, ip: str | None = None, now: float | None = None) -> ApiKey:
        """Return the stored record of ``key`` when it may be used now, from ``ip``.

        ``now`` is a Unix time in seconds (default: the current time). Malformed
        keys and bad checksums are refused without any I/O; known keys are served
        from memory; state and deadlines are checked on every call.

        Raises:
            InvalidApiKeyError: with ``reason`` ``malformed``, ``bad_checksum``,
                ``unknown``, ``revoked``, ``disabled``, ``expired`` or ``grace_ended``.
            ApiKeyIPNotAllowedError: the key has an IP allow-list without ``ip``.
            DatabaseUnavailableError: a cache miss could not be answered (fail closed).
        """
        if len(key) > MAX_API_KEY_LENGTH:
            raise InvalidApiKeyError("malformed")
        digest = self.digest(key)
        entry = self._found.get(digest)
        if entry is None:
            # Not a known key: check its shape and checksum before any I/O. A key found
            # in the cache matched a stored digest, so it was well formed (hot path).
            self._check_format(key, digest)
            entry = await self._lookup(digest)
        at = time.time() if now is None else now
        record = entry.key
        refusal = api_key_refusal(record, at)
        if refusal is not None:
            raise InvalidApiKeyError(refusal)
        if entry.networks and not _ip_allowed(entry.networks, ip):
            raise ApiKeyIPNotAllowedError()
        self._last_used[record.id] = (at, ip)  # a datetime only when flushed
        return record

    async def look_up(self, key: str) -> ApiKey:
        """Fill this cache (and its mirrors) with the stored record of ``key``.

        What :meth:`verify` does before it judges a key (the native data plane's
        lookup of a key it has no record of): the record is returned and
        mirrored whatever its state; nothing is judged or marked used.

        Raises:
            InvalidApiKeyError: malformed, bad checksum or unknown (refusal mirrored).
            DatabaseUnavailableError: the lookup could not be answered.
        """
        if len(key) > MAX_API_KEY_LENGTH:
            raise InvalidApiKeyError("malformed")
        digest = self.digest(key)
        self._check_format(key, digest)
        clock = time.monotonic()
        entry = self._found.get(digest, clock)
        if entry is not None:
            # Held here, not in the mirror (it evicted it): mirror it again.
            for mirror in self._mirrors:
                mirror.found(entry.key, self._found.fresh_for(digest, clock))
            return entry.key
        return (await self._lookup(digest)).key

    def _check_format(self, key: str, digest: str) -> None:
        try:
            parse_api_key(key)
        except ApiKeyFormatError as error:
            # Never a valid key: mirrors answer its next presentations themselves.
            for mirror in self._mirrors:
                mirror.refused(digest, NEGATIVE_TTL)
            raise InvalidApiKeyError(error.reason) from None

    async def _lookup(self, digest: str) -> _Entry:
        clock = time.monotonic()
        entry = self._found.get(digest, clock)
        if entry is not None:
            return entry
        if self._unknown.get(digest, clock):
            for mirror in self._mirrors:
                mirror.refused(digest, self._unknown.fresh_for(digest, clock))
            raise InvalidApiKeyError("unknown")
        epoch = self._epoch
        record = await self.db.api_keys.find_by_digest(digest)
        if record is not None:
            record = await self._judged(record)
        # Kept and mirrored only when no invalidation arrived while reading: the
        # record (or its absence) may predate it; a key created meanwhile may be this one.
        kept = epoch == self._epoch
        if record is None:
            self._found.pop(digest)
            if kept:
                self._unknown.put(digest, True, NEGATIVE_TTL)
                for mirror in self._mirrors:
                    mirror.refused(digest, NEGATIVE_TTL)
            raise InvalidApiKeyError("unknown")
        self._unknown.pop(digest)
        entry = _Entry(record)
        if kept:
            self._digest_of[record.id] = digest
            for evicted in self._found.put(digest, entry, POSITIVE_TTL):
                self._digest_of.pop(evicted.key.id, None)
            for mirror in self._mirrors:
                mirror.found(record, POSITIVE_TTL)
        return entry

    async def _judged(self, key: ApiKey) -> ApiKey:
        """``key`` as the verifiers judge it: disabled while its owning bastion user is.

        One read of the user, on a cache miss only, for user-owned keys only. An
        ``owner_id`` that names no bastion user (an id of the operator's own) changes
        nothing: keys may name owners bastion does not manage.
        """
        if key.owner_type != "user" or not key.owner_id or key.disabled:
            return key
        try:
            owner = await self.db.users.get(key.owner_id)
        except NotFoundError:
            return key
        return dataclasses.replace(key, disabled=True) if owner.disabled else key

    async def _get_judged(self, key_id: str) -> ApiKey:
        return await self._judged(await self.get(key_id))

    async def owner_changed(self, user_id: str) -> None:
        """The change feed's ``users`` channel: forget the keys the user owns, here and in
        the native core, so their next use reads the user's state again. An empty message
        ("drop everything") forgets every key."""
        if not user_id:
            self.invalidate()
            return
        cursor: str | None = None
        while True:
            page = await self.db.api_keys.list(
                owner_type="user", owner_id=user_id, limit=1000, cursor=cursor
            )
            for key in page.items:
                self.invalidate(key.id)
            cursor = page.next_cursor
            if cursor is None:
                return

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget the cached record of ``key_id`` (everything cached when ``None``).

        Every "no such key" goes too, whichever key changed: the change may be
        that key's creation (the change feed announces it), and a refusal is
        cheap to learn again.
        """
        self._epoch += 1
        for mirror in self._mirrors:
            mirror.invalidated(key_id)
        self._unknown.clear()
        self._by_id.forget(key_id)
        if key_id is None:
            self._found.clear()
            self._digest_of.clear()
            return
        digest = self._digest_of.pop(key_id, None)
        if digest is not None:
            self._found.pop(digest)

    # -- leak response ----------------------------------------------------

    async def report_leaks(
        self, keys: Sequence[str], *, source: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Revoke every reported key that is one of ours; one result per input, same order.

        Each result: ``{"prefix": display prefix or None, "id": key id or None,
        "status": s}`` with ``s`` one of ``invalid`` (not a bastion key: malformed
        or bad checksum), ``unknown`` (well-formed, not stored), ``revoked`` (revoked
        now) or ``already_revoked``. Never contains the reported key itself.

        Raises:
            ApiKeySpecError: more than :data:`MAX_LEAK_REPORT` keys.
        """
        if len(keys) > MAX_LEAK_REPORT:
            raise ApiKeySpecError("keys", f"report at most {MAX_LEAK_REPORT} keys at a time")
        results: builtins.list[dict[str, Any]] = []
        origin = (source or "unspecified")[:100]
        for key in keys:
            try:
                parsed = parse_api_key(key)
            except ApiKeyFormatError:
                results.append({"prefix": None, "id": None, "status": "invalid"})
                continue
            # Straight to the database: a leak report must not be answered from a stale cache.
            record = await self.db.api_keys.find_by_digest(self.digest(key))
            if record is None:
                results.append({"prefix": parsed.display_prefix, "id": None, "status": "unknown"})
                continue
            if record.revoked_at is not None:
                status = "already_revoked"
            else:
                at = utcnow()
                record = await self.db.api_keys.update(record.id, revoked_at=at, updated_at=at)
                await self._invalidate(record)
                status = "revoked"
            log.warning(
                "API key %s (%s) reported leaked by %r: %s",
                record.id,
                record.prefix,
                origin,
                status,
            )
            results.append({"prefix": record.prefix, "id": record.id, "status": status})
        return results

    # -- background work --------------------------------------------------

    async def flush_last_used(self) -> int:
        """Write the remembered last-used times and IPs in one batch; return how many keys.

        Uses served by a mirror (the native data plane) count too; their address is
        not known here, so a key's latest use through this process keeps its IP.
        """
        for mirror in self._mirrors:
            for key_id, at in mirror.used():
                seen = self._last_used.get(key_id)
                if seen is None or seen[0] < at:
                    self._last_used[key_id] = (at, seen[1] if seen is not None else None)
        if not self._last_used:
            return 0
        pending, self._last_used = self._last_used, {}
        uses = [
            (key_id, datetime.fromtimestamp(at, UTC), ip) for key_id, (at, ip) in pending.items()
        ]
        try:
            await self.db.api_keys.touch_last_used_many(uses)
        except Exception:
            # Keep what was not written (unless newer uses replaced it) for the next flush.
            for key_id, use in pending.items():
                self._last_used.setdefault(key_id, use)
            raise
        return len(uses)

    async def run(
        self, stop: asyncio.Event, *, flush_interval: float = FLUSH_INTERVAL, backoff: float = 1.0
    ) -> None:
        """Until ``stop`` is set: apply invalidations published by other processes and
        flush last-used times every ``flush_interval`` seconds (and once more at the end).

        When the shared state loses the subscription the whole cache is dropped
        (messages may have been missed) and the subscription is opened again.
        """
        flusher = asyncio.ensure_future(self._flush_loop(stop, flush_interval))
        try:
            await self._listen(stop, backoff)
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            try:
                await self.flush_last_used()
            except Exception as error:
                log.warning("could not write API key last-used times at shutdown: %s", error)

    async def _flush_loop(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return
            try:
                await self.flush_last_used()
            except Exception as error:
                log.warning("could not write API key last-used times (will retry): %s", error)

    async def _listen(self, stop: asyncio.Event, backoff: float) -> None:
        await self._changes.follow(stop, backoff=backoff)

    # -- internals ----------------------------------------------------------

    @staticmethod
    def _known_id(key_id: str) -> str:
        # Ids come from command lines and URLs; one no key can have is simply not found
        # (a NUL would make the database driver fail instead).
        if not isinstance(key_id, str) or not 0 < len(key_id) <= 64 or not storable(key_id):
            raise NotFoundError(f"API key {str(key_id)[:60]!r} does not exist")
        return key_id

    async def _store_new(
        self, values: dict[str, Any], environment: str | None, at: datetime
    ) -> tuple[ApiKey, str]:
        secret = generate_api_key(environment)
        record = ApiKey(
            digest=self.digest(secret),
            prefix=parse_api_key(secret).display_prefix,
            created_at=at,
            updated_at=at,
            **values,
        )
        return await self.db.api_keys.create(record), secret

    async def _invalidate(self, record: ApiKey) -> None:
        # Also by digest: this process may hold the key cached under it without the id map.
        self._found.pop(record.digest)
        self._unknown.pop(record.digest)
        await self._changes.changed(record.id)

    # ``list`` last: inside the class body the name shadows the builtin afterwards.
    async def list(
        self,
        *,
        owner_type: str | None = None,
        owner_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[ApiKey]:
        """Keys in creation order, optionally those of one owner.

        Raises ``InvalidCursorError`` for a cursor this listing did not hand out.
        """
        return await self.db.api_keys.list(
            owner_type=owner_type, owner_id=owner_id, limit=limit, cursor=cursor
        )
