"""The lifecycle of bastion's token-signing keys: generation, rotation with overlap, retirement.

One lifecycle per algorithm. bastion keeps one active key for each algorithm of
``signing_keys.algorithms``: ``signing_keys.algorithm`` (access tokens, the identity
assertion; ES256 by default) and each of ``signing_keys.id_token_algorithms`` (ID
tokens; ES256 and RS256 by default — OpenID Connect Discovery §3 requires RS256). The
keys of one algorithm rotate, retire and converge among themselves; rotating the RS256
key never touches the ES256 one. A key of an algorithm dropped from the settings stops
signing and retires like any superseded key. Every key, of every algorithm, is in the
JWKS with its ``alg``: verifiers take the algorithm from the key found by ``kid``.

States and their meaning (stored in ``signing_keys.state``)::

    next ──(activates_at passes)──► active ──(a successor activates)──► retiring
      │                                                                    │
      └──────────────(retire: compromise)────► retired ◄──(retires_at)─────┘

- **next**: published in the JWKS, does not sign yet. ``rotate()`` creates one
  with ``activates_at = now + signing_keys.prepublish``, so every verifier that
  caches the JWKS for at most ``jwks_max_age`` (< prepublish, checked by the
  settings) knows the key before the first token signed with it arrives.
- **active**: signs new tokens. Exactly one per algorithm after
  :meth:`SigningKeyManager.refresh` converged (see below).
- **retiring**: published, no longer signs. It stays published until every token
  it signed has expired: ``retires_at`` = the moment it stopped signing (when
  the transition was applied; :meth:`~SigningKeyManager.run` wakes for it at the
  successor's ``activates_at``) + the longer of ``tokens.max_access_token_ttl`` and
  ``tokens.id_token_ttl`` + ``tokens.leeway`` (for an emergency rotation also + the
  refresh interval, see below).
- **retired**: not published, never used again. The row stays for audit. Its
  private key stays **sealed** under the master key rather than wiped: a retired
  key is no longer trusted by anything bastion runs (it is not in the JWKS), the
  sealed value keeps ``bastion secrets rotate-master-key`` (which re-wraps every
  sealed column) working, and the private key of a retired row is never loaded.

First start: for each algorithm with no key at all (or none active or pending), one
key is created **active** at once — there is nothing a pre-publication would protect
(an algorithm added to the settings later gets its first key the same way).

Cluster safety. Every transition is a pure function of the stored timestamps
and the clock (:func:`plan_transitions`), applied in one write transaction of
conditional updates (``UPDATE … WHERE kid = ? AND state = <expected>``). Nodes
running :meth:`~SigningKeyManager.refresh` concurrently compute the same plan;
whoever commits first wins and the others' updates match no row. Ties are broken
deterministically: among the active keys and the ``next`` keys of one algorithm that
are due, the one with the **latest** activation time (then the larger ``kid``) wins and
every other becomes retiring — so two concurrent first starts, or two concurrent
``rotate`` calls, still converge on one active key per algorithm. ``refresh`` re-reads and
repeats until nothing is left to do.

Hot path. :meth:`~SigningKeyManager.current`, :meth:`~SigningKeyManager.public_key_set`
and :meth:`~SigningKeyManager.jwks` read memory only. Memory is reloaded after
every change this manager makes, on a message on the shared channel
``"signing-keys"`` (published after every rotate / retire / transition), and by
the background loop :meth:`~SigningKeyManager.run`, which refreshes every
``refresh_interval`` seconds (30 s by default) and also wakes exactly when a
stored ``activates_at`` / ``retires_at`` / scheduled rotation falls due, so all
nodes switch keys together. With in-process (``memory://``) shared state a
separate process — the ``bastion signing-keys`` CLI — cannot reach the server's
subscribers: the server then sees the change at its next periodic refresh, at
most ``refresh_interval`` later. That is also why an emergency rotation
(``rotate(immediate=True)``) keeps the previous key published for one extra
``refresh_interval``: nodes that have not heard yet may still sign with it.

Scheduled rotation (``signing_keys.rotate_every``): when the active key has been
active for ``rotate_every - prepublish`` and no ``next`` key exists, ``refresh``
creates one, so it activates ``rotate_every`` after its predecessor did. A short
shared-state lock keeps concurrent nodes from each creating one (and if they do
anyway, the tie-break above applies).

Private keys are sealed with ``keyring.seal(pem, context=seal_context("signing_keys",
"private_key_sealed", kid))`` and opened only for ``next`` and ``active`` keys;
the key objects live only in this process's memory.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, cast

import sqlalchemy as sa

from bastion.crypto import Keyring, PublicKeySet, SigningAlgorithm, SigningKeyPair
from bastion.errors import BastionError, ServiceUnavailableError
from bastion.settings import Settings
from bastion.storage import Database, SigningKey, feed
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.feed import Change
from bastion.storage.models import SigningKeyState
from bastion.storage.shared import SharedState
from bastion.storage.sql import record_changes, schema

log = logging.getLogger("bastion.oauth.signing_keys")

CHANNEL = feed.SIGNING_KEYS
"""The shared-state channel announcing that the stored signing keys changed."""

DEFAULT_REFRESH_INTERVAL = 30.0
SCHEDULE_LOCK_PREFIX = "signing-keys:scheduled-rotation:"
SCHEDULE_LOCK_TTL = 60.0
PUBLISHED_STATES: tuple[SigningKeyState, ...] = ("next", "active", "retiring")
_SIGNING_STATES = frozenset({"next", "active"})
# Members a JWK may carry that are private (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MAX_CONVERGE_ROUNDS = 5
_MIN_WAKEUP = 0.05


class SigningKeyError(BastionError):
    """Root of the signing-key lifecycle errors."""

    code = "signing_key_error"
    status = 500
    title = "Signing key error"


class SigningKeyInUseError(SigningKeyError):
    """The key cannot be retired: it is the active key, the one that signs."""

    code = "signing_key_in_use"
    status = 409
    title = "Signing key in use"


class SigningKeyAlgorithmMismatchError(SigningKeyError):
    """The key named is of another algorithm than the one the caller said."""

    code = "signing_key_algorithm_mismatch"
    status = 409
    title = "Signing key of another algorithm"


class SigningAlgorithmNotConfiguredError(SigningKeyError):
    """A key of an algorithm bastion does not sign with was asked for."""

    code = "signing_algorithm_not_configured"
    status = 400
    title = "Signing algorithm not configured"


class NoActiveSigningKeyError(SigningKeyError, ServiceUnavailableError):
    """No active signing key is loaded in memory (``load()`` not called or failed)."""

    code = "no_active_signing_key"
    status = 503
    title = "No active signing key"


def _utc(now: float | None) -> datetime:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC)


def _activation(key: SigningKey) -> datetime:
    """When ``key`` started (or starts) signing; keys created active carry ``activates_at``."""
    return key.activates_at or key.created_at


def _rank(key: SigningKey) -> tuple[datetime, str]:
    return (_activation(key), key.kid)


def public_only(jwk: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``jwk`` without any private member (defence in depth for what is published)."""
    return {name: value for name, value in jwk.items() if name not in _PRIVATE_MEMBERS}


@dataclass(frozen=True)
class Transition:
    """One conditional state change: ``kid`` from one of ``expected`` to ``state``."""

    kid: str
    expected: tuple[str, ...]
    state: str
    changes: dict[str, Any] = field(default_factory=dict)


def plan_transitions(
    keys: Iterable[SigningKey],
    now: datetime,
    *,
    hold: timedelta,
    algorithms: Collection[str] | None = None,
) -> tuple[Transition, ...]:
    """The time-based transitions due at ``now`` for the stored ``keys`` (a pure function).

    The lifecycle holds per algorithm: the keys of each algorithm converge on one
    active key of their own. ``algorithms`` are the ones bastion signs with (``None``:
    every algorithm stored); a key of any other algorithm that still signs (``next`` or
    ``active``) becomes retiring. ``hold`` is how long a key stays published after it
    stopped signing (max token lifetime + leeway). Returns transitions sorted by kid
    (the order rows are locked in, so concurrent appliers cannot deadlock).
    """
    keys = builtins.list(keys)
    plan: list[Transition] = []
    for alg in sorted({key.alg for key in keys}):
        group = [key for key in keys if key.alg == alg]
        if algorithms is None or alg in algorithms:
            plan.extend(_plan_signing(group, now, hold))
        else:
            plan.extend(
                Transition(key.kid, ("next", "active"), "retiring", {"retires_at": now + hold})
                for key in group
                if key.state in _SIGNING_STATES
            )
    for key in keys:
        if key.state == "retiring" and (key.retires_at is None or key.retires_at <= now):
            plan.append(Transition(key.kid, ("retiring",), "retired", {"retired_at": now}))
    return tuple(sorted(plan, key=lambda t: t.kid))


def _plan_signing(keys: Sequence[SigningKey], now: datetime, hold: timedelta) -> list[Transition]:
    """The activations and demotions due among ``keys`` (all of one algorithm)."""
    actives = [k for k in keys if k.state == "active"]
    pending = [k for k in keys if k.state == "next"]
    due = [k for k in pending if k.activates_at is None or k.activates_at <= now]
    if not actives and not due and pending:
        # No key signs (an abnormal state): the latest published candidate takes over now.
        due = [max(pending, key=_rank)]
    plan: list[Transition] = []
    candidates = actives + due
    if candidates:
        winner = max(candidates, key=_rank)
        if winner.state == "next":
            plan.append(Transition(winner.kid, ("next",), "active", {"activates_at": now}))
        for key in candidates:
            if key is not winner:
                plan.append(
                    Transition(key.kid, ("next", "active"), "retiring", {"retires_at": now + hold})
                )
    return plan


@dataclass(frozen=True)
class _Loaded:
    """What the hot path reads: swapped as a whole after every reload."""

    active: Mapping[str, SigningKeyPair]
    key_set: PublicKeySet
    jwks: tuple[dict[str, Any], ...]
    records: tuple[SigningKey, ...]


_EMPTY = _Loaded(active=MappingProxyType({}), key_set=PublicKeySet(), jwks=(), records=())


class SigningKeyManager:
    """Owns bastion's token-signing keys: storage, rotation, and the in-memory signing key and JWKS.

    Call :meth:`load` once at start-up, then keep :meth:`run` running in the
    background. Every ``now`` argument is seconds since the epoch (an injectable
    clock for tests); ``None`` means the current time.
    """

    def __init__(
        self,
        db: Database,
        keyring: Keyring,
        settings: Settings,
        shared: SharedState,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
    ) -> None:
        if refresh_interval <= 0:
            raise ValueError(f"refresh_interval must be > 0, not {refresh_interval!r}")
        self._db = db
        self._keyring = keyring
        self._settings = settings
        self._shared = shared
        self.refresh_interval = float(refresh_interval)
        self._loaded = _EMPTY
        self._pairs: dict[str, SigningKeyPair] = {}
        self._dropped_listeners: list[Callable[[], None]] = []
        self._active_listeners: list[Callable[[SigningKeyPair | None], None]] = []
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    # -- hot path (memory only) ------------------------------------------------------

    def current(self, alg: str | None = None) -> SigningKeyPair:
        """The active signing key of ``alg`` (from memory; no I/O).

        ``alg`` defaults to ``signing_keys.algorithm``: the key of access tokens and of
        the identity assertion.

        Raises:
            NoActiveSigningKeyError: nothing loaded yet (call :meth:`load` first), or
                ``alg`` is not one of the algorithms bastion signs with.
        """
        algorithm = alg or self._settings.signing_keys.algorithm
        active = self._loaded.active.get(algorithm)
        if active is None:
            raise NoActiveSigningKeyError(
                f"no active {algorithm} signing key is loaded — the signing-key manager "
                "was not loaded, or signing_keys does not name this algorithm"
            )
        return active

    def id_token_algorithms(self) -> tuple[str, ...]:
        """The algorithms an ID token can be signed with now (memory only).

        ``signing_keys.id_token_algorithms`` in their configured order (the first is a
        client's default), each with an active key loaded. After :meth:`load` that is all
        of them: RS256 always among them (OpenID Connect Discovery §3), so this is what
        ``id_token_signing_alg_values_supported`` publishes.
        """
        active = self._loaded.active
        return tuple(
            alg for alg in self._settings.signing_keys.id_token_algorithms if alg in active
        )

    def public_key_set(self) -> PublicKeySet:
        """The keys verifiers of bastion's tokens trust: next, active and retiring (memory only)."""
        return self._loaded.key_set

    def jwks(self) -> dict[str, Any]:
        """The JWK Set document to publish: ``{"keys": [...]}``, public members only."""
        return {"keys": [dict(jwk) for jwk in self._loaded.jwks]}

    # -- lifecycle -------------------------------------------------------------------

    @property
    def _hold(self) -> timedelta:
        tokens = self._settings.tokens
        longest = max(tokens.max_access_token_ttl, tokens.id_token_ttl)
        return timedelta(seconds=longest + tokens.leeway)

    @property
    def _algorithms(self) -> tuple[SigningAlgorithm, ...]:
        return self._settings.signing_keys.algorithms

    async def load(self, *, now: float | None = None) -> bool:
        """Read the keys into memory, applying due transitions; create the first key if none.

        Returns whether a first key was created (active at once).

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            DecryptionError: a stored private key cannot be opened with this master keyring.
        """
        async with self._lock:
            return await self._converge(_utc(now), bootstrap=True)

    async def refresh(self, *, now: float | None = None) -> None:
        """Apply the transitions due at ``now`` (idempotent, cluster-safe) and reload memory.

        Also starts a scheduled rotation when ``signing_keys.rotate_every`` says so,
        and creates a key if none can sign.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            DecryptionError: a stored private key cannot be opened with this master keyring.
        """
        async with self._lock:
            await self._converge(_utc(now), bootstrap=True)

    async def reload(self) -> None:
        """Re-read the stored keys into memory without changing anything stored.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            DecryptionError: a stored private key cannot be opened with this master keyring.
        """
        async with self._lock:
            await self._reload(await self._published())

    async def rotate(
        self,
        *,
        alg: SigningAlgorithm | None = None,
        now: float | None = None,
        immediate: bool = False,
    ) -> SigningKey:
        """Create a new key of ``alg``: ``next`` (signs after ``prepublish``) or,
        ``immediate``, active now. Keys of other algorithms are not touched.

        With ``immediate`` (an emergency, e.g. a compromised key) the previous active
        key of ``alg`` becomes retiring at once, kept published for the longest token
        lifetime + leeway + ``refresh_interval``. With no key of ``alg`` able to sign,
        the new key is active at once either way. ``alg`` defaults to
        ``signing_keys.algorithm``.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            SigningAlgorithmNotConfiguredError: bastion does not sign with ``alg``
                (``signing_keys.algorithm`` / ``id_token_algorithms`` do not name it).
        """
        algorithm: SigningAlgorithm = alg or self._settings.signing_keys.algorithm
        if algorithm not in self._algorithms:
            raise SigningAlgorithmNotConfiguredError(
                f"bastion does not sign with {algorithm!r}: it keeps keys for "
                f"{', '.join(self._algorithms)} — add it to signing_keys.id_token_algorithms "
                "(or make it signing_keys.algorithm) first",
                alg=algorithm,
            )
        moment = _utc(now)
        async with self._lock:
            stored = await self._settle(moment)
            if not any(k.state == "active" and k.alg == algorithm for k in stored):
                immediate = True
            key = await self._create(moment, alg=algorithm, immediate=immediate)
            await self._reload(await self._settle(moment))
        await self._announce()
        log.info(
            "signing key created",
            extra={"kid": key.kid, "alg": key.alg, "state": key.state},
        )
        return await self._db.signing_keys.get(key.kid)

    async def retire(
        self, kid: str, *, alg: str | None = None, now: float | None = None
    ) -> SigningKey:
        """Retire ``kid`` at once: it leaves the JWKS and tokens it signed stop verifying.

        For a compromised key. A key already retired is returned unchanged. With
        ``alg``, the key must be of that algorithm (a guard against a mistyped kid).

        Raises:
            NotFoundError: no key has this kid.
            SigningKeyAlgorithmMismatchError: ``alg`` given and the key is of another.
            SigningKeyInUseError: ``kid`` is the active key of its algorithm — make a
                replacement active first (``rotate(alg=..., immediate=True)``), then retire it.
            DatabaseUnavailableError: the database cannot be reached.
        """
        moment = _utc(now)
        async with self._lock:
            for _ in range(_MAX_CONVERGE_ROUNDS):
                key = await self._db.signing_keys.get(kid)
                if alg is not None and key.alg != alg:
                    raise SigningKeyAlgorithmMismatchError(
                        f"signing key {kid!r} is an {key.alg} key, not {alg}", kid=kid
                    )
                if key.state == "retired":
                    return key
                if key.state == "active":
                    raise SigningKeyInUseError(
                        f"signing key {kid!r} is the active {key.alg} key and cannot be "
                        "retired — make a replacement active first (`bastion signing-keys "
                        f"rotate --algorithm {key.alg} --now`), then retire {kid!r}",
                        kid=kid,
                    )
                change = Transition(kid, (key.state,), "retired", {"retired_at": moment})
                if await self._apply((change,)):
                    break
            await self._reload(await self._published())
        await self._announce()
        log.warning("signing key retired", extra={"kid": kid})
        return await self._db.signing_keys.get(kid)

    async def list(self) -> builtins.list[SigningKey]:
        """Every stored key (retired ones too) in creation order.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
        """
        return builtins.list(await self._db.signing_keys.list())

    # -- background ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Keep memory current until ``stop`` is set.

        Refreshes every ``refresh_interval`` and when a stored transition falls due;
        reloads on every message on the shared channel ``"signing-keys"``. Failures
        (database or shared state down) are logged and retried: the keys in memory
        keep serving meanwhile.
        """
        listener = asyncio.create_task(self._listen(), name="signing-keys-listener")
        refresh_due = True
        try:
            while not stop.is_set():
                if refresh_due:
                    try:
                        await self.refresh()
                    except BastionError as error:
                        log.warning(
                            "signing keys: refresh failed; serving the keys in memory",
                            extra={"code": error.code, "detail": error.detail},
                        )
                # A reload (pub/sub) may bring a new activation moment: wake to re-plan.
                self._changed.clear()
                woken = await _wait_any(
                    (stop, self._changed), at_most=self._next_wakeup(time.time())
                )
                refresh_due = not woken
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    def _next_wakeup(self, now: float) -> float:
        """Seconds until the next refresh: the interval, or sooner when a transition is due."""
        moments: list[float] = []
        for key in self._loaded.records:
            if key.state == "next" and key.activates_at is not None:
                moments.append(key.activates_at.timestamp())
            elif key.state == "retiring" and key.retires_at is not None:
                moments.append(key.retires_at.timestamp())
            elif key.state == "active":
                scheduled = self._scheduled_rotation_at(key)
                if scheduled is not None:
                    moments.append(scheduled.timestamp())
        delay = self.refresh_interval
        for moment in moments:
            if moment > now:
                # A little after the moment, so the transition is due when we look.
                delay = min(delay, moment - now + _MIN_WAKEUP)
        return max(delay, _MIN_WAKEUP)

    async def _listen(self) -> None:
        """Reload on every message on ``CHANNEL``; resubscribe (and reload) after a loss."""
        backoff = 0.5
        resubscribed = False
        while True:
            try:
                async with self._shared.subscribe(CHANNEL) as subscription:
                    backoff = 0.5
                    if resubscribed:
                        # Messages published while we were not subscribed are lost.
                        await self._safe_reload()
                    async for _message in subscription:
                        await self._safe_reload()
            except BastionError as error:
                log.warning(
                    "signing keys: change notifications lost; resubscribing",
                    extra={"code": error.code, "detail": error.detail},
                )
            # Lost or ended (shared state closed): try again, without spinning.
            resubscribed = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.refresh_interval)

    async def _safe_reload(self) -> None:
        try:
            await self.reload()
        except BastionError as error:
            log.warning(
                "signing keys: reload failed; serving the keys in memory",
                extra={"code": error.code, "detail": error.detail},
            )

    async def _announce(self) -> None:
        try:
            await self._shared.publish(CHANNEL, b"changed")
        except SharedStateUnavailableError as error:
            # Stored already; other nodes catch up at their next periodic refresh.
            log.warning(
                "signing keys: could not announce a change; other nodes see it at their "
                "next refresh",
                extra={"code": error.code, "detail": error.detail},
            )

    # -- internals -------------------------------------------------------------------

    async def _published(self) -> tuple[SigningKey, ...]:
        return await self._db.signing_keys.list(states=PUBLISHED_STATES)

    async def _settle(
        self, moment: datetime, stored: tuple[SigningKey, ...] | None = None
    ) -> tuple[SigningKey, ...]:
        """Apply due transitions until none is left; return the stored published keys."""
        if stored is None:
            stored = await self._published()
        for _ in range(_MAX_CONVERGE_ROUNDS):
            plan = plan_transitions(stored, moment, hold=self._hold, algorithms=self._algorithms)
            if not plan:
                break
            await self._apply(plan)
            stored = await self._published()
        return stored

    async def _converge(self, moment: datetime, *, bootstrap: bool) -> bool:
        """Settle; per algorithm, create a key when none can sign (``bootstrap``) or a
        scheduled rotation is due; reload memory. Whether a key was created active."""
        before = await self._published()
        stored = await self._settle(moment, before)
        created = False
        for alg in self._algorithms if bootstrap else ():
            own = [k for k in stored if k.alg == alg]
            if not any(k.state in _SIGNING_STATES for k in own):
                await self._create(moment, alg=alg, immediate=True)
                created = True
                stored = await self._settle(moment)
            elif await self._rotation_due(own, moment):
                await self._create(moment, alg=alg, immediate=False)
                stored = await self._settle(moment)
        await self._reload(stored)
        if created or _states(before) != _states(stored):
            await self._announce()
        return created

    def _scheduled_rotation_at(self, active: SigningKey) -> datetime | None:
        every = self._settings.signing_keys.rotate_every
        if every is None:
            return None
        lead = min(self._settings.signing_keys.prepublish, every)
        return _activation(active) + timedelta(seconds=every - lead)

    async def _rotation_due(self, stored: Sequence[SigningKey], moment: datetime) -> bool:
        """Whether the scheduled rotation of ``stored`` (the keys of one algorithm) is due."""
        if any(k.state == "next" for k in stored):
            return False
        actives = [k for k in stored if k.state == "active"]
        if not actives:
            return False
        active = max(actives, key=_rank)
        at = self._scheduled_rotation_at(active)
        if at is None or moment < at:
            return False
        try:
            return await self._shared.add(
                SCHEDULE_LOCK_PREFIX + active.kid, b"1", ttl=SCHEDULE_LOCK_TTL
            )
        except SharedStateUnavailableError:
            # Without the lock two nodes may each create a key; the tie-break resolves it.
            return True

    async def _create(
        self, moment: datetime, *, alg: SigningAlgorithm, immediate: bool
    ) -> SigningKey:
        """Generate, seal and store a key of ``alg``; ``immediate`` also demotes the active
        key of ``alg`` (only), atomically."""
        config = self._settings.signing_keys
        algorithm = alg
        # RSA generation can take a second: keep it off the event loop.
        pair = await asyncio.to_thread(
            SigningKeyPair.generate, algorithm, rsa_key_size=config.rsa_key_size
        )
        context = schema.seal_context("signing_keys", "private_key_sealed", pair.kid)
        record = SigningKey(
            kid=pair.kid,
            alg=pair.alg,
            public_jwk=public_only(pair.public_jwk()),
            private_key_sealed=self._keyring.seal(pair.private_bytes(), context=context),
            state="active" if immediate else "next",
            created_at=moment,
            activates_at=moment if immediate else moment + timedelta(seconds=config.prepublish),
        )
        table = schema.signing_keys
        async with self._db.transaction(
            write=True, conflict=f"signing key {pair.kid!r} already exists"
        ) as conn:
            # The repository's mapper is the one home of a record's row; the insert is ours
            # because demoting the active key must share its transaction.
            row = self._db.signing_keys.mapper.to_row(record)
            await conn.execute(sa.insert(table).values(row))
            if immediate:
                # Nodes that have not heard of the new key may sign with the old one for up
                # to one refresh interval: keep it published that much longer.
                retires_at = moment + self._hold + timedelta(seconds=self.refresh_interval)
                await conn.execute(
                    sa.update(table)
                    .where(
                        table.c.state == "active",
                        table.c.alg == record.alg,
                        table.c.kid != record.kid,
                    )
                    .values(state="retiring", retires_at=retires_at)
                )
            # Every node hears of it within a second, whichever process wrote it.
            await record_changes(conn, [Change(feed.SIGNING_KEYS, record.kid)])
        self._pairs[pair.kid] = pair
        return record

    async def _apply(self, plan: Sequence[Transition]) -> int:
        """Apply ``plan`` in one write transaction of conditional updates; rows changed."""
        table = schema.signing_keys
        changed = 0
        async with self._db.transaction(write=True) as conn:
            for step in plan:
                result = await conn.execute(
                    sa.update(table)
                    .where(table.c.kid == step.kid, table.c.state.in_(step.expected))
                    .values(state=step.state, **step.changes)
                )
                if result.rowcount:
                    await record_changes(conn, [Change(feed.SIGNING_KEYS, step.kid)])
                changed += max(result.rowcount or 0, 0)
        return changed

    async def _reload(self, stored: Sequence[SigningKey]) -> None:
        """Build the in-memory state from the stored published keys."""
        pairs: dict[str, SigningKeyPair] = {}
        for key in stored:
            if key.state in _SIGNING_STATES:
                pairs[key.kid] = self._pairs.get(key.kid) or self._open(key)
        active: dict[str, SigningKeyPair] = {}
        for alg in sorted({k.alg for k in stored if k.state == "active"}):
            winner = max((k for k in stored if k.state == "active" and k.alg == alg), key=_rank)
            active[alg] = pairs[winner.kid]
        # The access-token key first: a verifier trying keys in order finds it at once.
        first = self._settings.signing_keys.algorithm
        order = {"active": 0, "next": 1, "retiring": 2}
        published = sorted(
            stored,
            key=lambda k: (order.get(k.state, 3), k.alg != first, k.alg, _activation(k), k.kid),
        )
        jwks = tuple(public_only(k.public_jwk) for k in published)
        key_set = PublicKeySet.from_jwks({"keys": builtins.list(jwks)})
        dropped = set(self._loaded.key_set.kids()) - set(key_set.kids())
        before = self._loaded.active.get(first)
        self._pairs = pairs
        self._loaded = _Loaded(
            active=MappingProxyType(active), key_set=key_set, jwks=jwks, records=tuple(stored)
        )
        self._changed.set()
        if dropped:
            # After the swap: a listener clearing a cache cannot re-fill it from the old set.
            for listener in self._dropped_listeners:
                listener()
        now_active = active.get(first)
        if now_active is not before:
            for on_active in self._active_listeners:
                on_active(now_active)

    def on_keys_dropped(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever a reload leaves a published key out (retired).

        For caches of tokens verified with the old key set (the gateway's
        verified-JWT cache), so a retired key's tokens are not served from memory.
        """
        self._dropped_listeners.append(listener)

    def on_active_changed(self, listener: Callable[[SigningKeyPair | None], None]) -> None:
        """Call ``listener(key)`` whenever a reload makes another key (or none) the active
        key of ``signing_keys.algorithm`` (the access-token key).

        For signers outside this object (the native core's identity assertion),
        so the next request signs with the key :meth:`current` returns.
        """
        self._active_listeners.append(listener)

    def _open(self, key: SigningKey) -> SigningKeyPair:
        context = schema.seal_context("signing_keys", "private_key_sealed", key.kid)
        pem = self._keyring.open(key.private_key_sealed, context=context)
        return SigningKeyPair.from_private_bytes(
            pem, kid=key.kid, alg=cast(SigningAlgorithm, key.alg)
        )


async def _wait_any(events: Sequence[asyncio.Event], *, at_most: float) -> bool:
    """Wait until one of ``events`` is set or ``at_most`` seconds pass; whether one was set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waiters, timeout=at_most, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


def _states(keys: Iterable[SigningKey]) -> dict[str, str]:
    return {key.kid: key.state for key in keys}


__all__ = [
    "CHANNEL",
    "NoActiveSigningKeyError",
    "SigningAlgorithmNotConfiguredError",
    "SigningKeyAlgorithmMismatchError",
    "SigningKeyError",
    "SigningKeyInUseError",
    "SigningKeyManager",
    "Transition",
    "plan_transitions",
    "public_only",
]
