"""Brute-force throttling of credential checks: login, MFA and OAuth client authentication.

Use::

    await throttle.check(account, ip)          # before verifying: raises when throttled
    ok = verify(...)
    await (throttle.succeeded if ok else throttle.failed)(account, ip)

State lives in the shared state (Redis with several nodes), so every node
sees every failure. Four counters, all over a sliding ``window``:

1. **account + IP** (the primary lock): after ``free_attempts`` failures of
   one account from one address, each further failure locks that pair for a
   growing delay (``base_delay * 2**n``, at most ``max_delay``). A success
   clears it. This is the lock that grows; it only blocks the attacker's own
   address.
2. **IP**: failures from one address across all accounts, with the same
   growing delay after ``ip_free_attempts``.
3. **credential stuffing**: ``stuffing_accounts`` *distinct* accounts failing
   from one address lock the whole address (with the growing delay per extra
   account) — one password tried on many accounts.
4. **account** (any address): many failures of one account from many
   addresses slow it down, but never by more than ``account_max_delay``
   (seconds, small): an attacker rotating addresses cannot lock the victim
   out. An address where the account recently succeeded (``known_for``
   seconds) is exempt from (4), so the victim's usual address is never
   slowed by an attack from elsewhere.

Accounts are stored as a keyed digest, never in clear. ``X-Forwarded-For`` is
for the caller to resolve (only from trusted proxies); this module counts the
address by its canonical bucket (:func:`~bastion.ratelimit.ip_bucket`: IPv4-mapped
IPv6 as IPv4, other IPv6 by /64), the same as per-IP rate limits.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any, Final

from bastion.errors import BastionError
from bastion.ratelimit.addresses import ip_bucket
from bastion.settings.limits import LoginThrottleSettings
from bastion.storage.shared import SharedState

__all__ = ["LoginThrottle", "LoginThrottledError", "ThrottlePolicy"]

_NS: Final = "login:"
# The policy's defaults are the settings' (``ratelimit.login``): written once, there.
_DEFAULT: Final = LoginThrottleSettings()


class LoginThrottledError(BastionError):
    """Too many failed attempts: wait ``retry_after`` seconds (429).

    ``scope`` (for the audit log, never shown) is which lock applied:
    ``account_ip``, ``ip``, ``stuffing`` or ``account``.
    """

    code = "too_many_attempts"
    status = 429
    title = "Too many attempts"

    def __init__(self, retry_after: int, scope: str) -> None:
        self.retry_after = max(1, int(retry_after))
        self.scope = scope
        super().__init__(f"Too many failed attempts; retry in {self.retry_after} s.")


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """The thresholds and delays of a :class:`LoginThrottle` (seconds and counts)."""

    free_attempts: int = _DEFAULT.free_attempts
    ip_free_attempts: int = _DEFAULT.ip_free_attempts
    stuffing_accounts: int = _DEFAULT.stuffing_accounts
    base_delay: float = _DEFAULT.base_delay
    max_delay: float = _DEFAULT.max_delay
    account_free_attempts: int = _DEFAULT.account_free_attempts
    account_max_delay: float = _DEFAULT.account_max_delay
    window: float = _DEFAULT.window
    known_for: float = _DEFAULT.known_for

    def __post_init__(self) -> None:
        for name in ("free_attempts", "ip_free_attempts", "stuffing_accounts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        if self.account_free_attempts < 1:
            raise ValueError("account_free_attempts must be >= 1")
        for name in ("base_delay", "max_delay", "account_max_delay", "window", "known_for"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")

    def delay(self, excess: int, cap: float) -> float:
        """The lock after ``excess`` failures beyond the free ones: doubling, at most ``cap``."""
        if excess < 1:
            return 0.0
        return min(cap, self.base_delay * 2.0 ** min(excess - 1, 40))


class LoginThrottle:
    """Per account+IP, per IP, credential-stuffing and (bounded) per-account throttling.

    ``kind`` separates the counters of different credential checks (``client``
    at the token endpoint, later ``login`` and ``mfa``). Methods raise
    SharedStateUnavailableError when the shared state is unreachable (the
    caller decides whether to fail open or closed).
    """

    def __init__(
        self,
        shared: SharedState,
        *,
        kind: str,
        policy: ThrottlePolicy | None = None,
        clock: Any = time.time,
    ) -> None:
        self.shared = shared
        self.kind = kind
        self.policy = policy or ThrottlePolicy()
        self._clock = clock

    def _account(self, account: str) -> str:
        # Keyed by kind so equal names of a user and a client do not collide; hashed so
        # account names never sit in the shared state (or its key listings) in clear.
        digest = hashlib.blake2b(account.encode("utf-8", "replace"), digest_size=12)
        digest.update(self.kind.encode())
        return digest.hexdigest()

    def _keys(self, account: str, ip: str) -> dict[str, str]:
        a = self._account(account)
        base = f"{_NS}{self.kind}:"
        return {
            "account_ip": f"{base}ai:{a}:{ip}",
            "ip": f"{base}ip:{ip}",
            "stuffing": f"{base}st:{ip}",
            "account": f"{base}a:{a}",
        }

    async def check(self, account: str, ip: str | None) -> None:
        """Raise LoginThrottledError when ``account`` from ``ip`` must wait; else return.

        Call before verifying the credential, so a throttled guess costs no
        verification and reveals nothing.
        """
        where = _where(ip)
        keys = self._keys(account, where)
        wait = 0.0
        scope = ""
        for name, key in keys.items():
            if name == "account" and await self.shared.get(self._known(account, where)):
                continue  # this address proved itself for the account: no account-wide delay
            until = await self.shared.get(f"{key}:lock")
            if until is None:
                continue
            left = float(until) - self._clock()
            if left > wait:
                wait, scope = left, name
        if wait > 0:
            raise LoginThrottledError(math.ceil(wait), scope)

    async def failed(self, account: str, ip: str | None) -> None:
        """Record a failed attempt and set whatever locks it triggers."""
        policy = self.policy
        where = _where(ip)
        keys = self._keys(account, where)
        window = policy.window
        pair = await self.shared.incr(keys["account_ip"], ttl=window)
        await self._lock(
            keys["account_ip"], policy.delay(pair - policy.free_attempts, policy.max_delay)
        )
        by_ip = await self.shared.incr(keys["ip"], ttl=window)
        await self._lock(
            keys["ip"], policy.delay(by_ip - policy.ip_free_attempts, policy.max_delay)
        )
        if await self.shared.add(f"{keys['stuffing']}:{self._account(account)}", b"1", ttl=window):
            accounts = await self.shared.incr(keys["stuffing"], ttl=window)
            # Reaching the threshold is the first excess: lock at once, then doubling.
            excess = accounts - policy.stuffing_accounts + 1
            await self._lock(keys["stuffing"], policy.delay(excess, policy.max_delay))
        by_account = await self.shared.incr(keys["account"], ttl=window)
        await self._lock(
            keys["account"],
            policy.delay(by_account - policy.account_free_attempts, policy.account_max_delay),
        )

    async def succeeded(self, account: str, ip: str | None) -> None:
        """Record a success: the account+IP pair starts afresh (other counters stay)."""
        where = _where(ip)
        key = self._keys(account, where)["account_ip"]
        await self.shared.delete(key)
        await self.shared.delete(f"{key}:lock")
        if ip is not None:
            await self.shared.set(self._known(account, where), b"1", ttl=self.policy.known_for)

    def _known(self, account: str, ip: str) -> str:
        return f"{_NS}{self.kind}:known:{self._account(account)}:{ip}"

    async def _lock(self, key: str, seconds: float) -> None:
        if seconds <= 0:
            return
        until = self._clock() + seconds
        await self.shared.set(f"{key}:lock", repr(until).encode(), ttl=seconds)


def _where(ip: str | None) -> str:
    # Counted by the same canonical bucket as per-IP rate limits (an IPv6 client by its /64).
    return ip_bucket(ip) if ip else "-"
