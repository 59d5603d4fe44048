"""LoginThrottle: account+IP growing delay, per IP, credential stuffing, bounded account lock."""

from __future__ import annotations

import pytest

from bastion.ratelimit.login import LoginThrottle, LoginThrottledError, ThrottlePolicy
from bastion.storage.shared import MemorySharedState, RedisSharedState, SharedState

VICTIM_IP = "198.51.100.10"
ATTACKER = "203.0.113.66"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, shared: SharedState | None = None, **policy: object) -> LoginThrottle:
    state = shared if shared is not None else MemorySharedState(clock=clock)
    return LoginThrottle(state, kind="client", policy=ThrottlePolicy(**policy), clock=clock)  # type: ignore[arg-type]


async def wait_required(t: LoginThrottle, account: str, ip: str) -> tuple[int, str] | None:
    try:
        await t.check(account, ip)
    except LoginThrottledError as exc:
        assert (exc.code, exc.status) == ("too_many_attempts", 429)
        return exc.retry_after, exc.scope
    return None


async def test_free_attempts_then_doubling_delay_per_account_and_ip() -> None:
    clock = Clock()
    t = throttle(clock, free_attempts=3, base_delay=2.0, max_delay=30.0)
    delays = []
    for _ in range(8):
        assert await wait_required(t, "app", ATTACKER) is None
        await t.failed("app", ATTACKER)
        waited = await wait_required(t, "app", ATTACKER)
        delays.append(waited[0] if waited else 0)
        if waited:
            clock.now += waited[0]  # the attacker waits out each delay
    assert delays == [0, 0, 0, 2, 4, 8, 16, 30]
    # Another address is not locked by the pair's lock.
    assert await wait_required(t, "app", VICTIM_IP) is None


async def test_success_resets_the_pair() -> None:
    clock = Clock()
    t = throttle(clock, free_attempts=2)
    for _ in range(3):
        await t.failed("app", VICTIM_IP)
    assert await wait_required(t, "app", VICTIM_IP) == (1, "account_ip")
    clock.now += 1
    await t.succeeded("app", VICTIM_IP)
    await t.failed("app", VICTIM_IP)
    assert await wait_required(t, "app", VICTIM_IP) is None  # counting starts again


async def test_credential_stuffing_locks_the_address() -> None:
    clock = Clock()
    t = throttle(clock, stuffing_accounts=5, base_delay=10.0)
    for n in range(4):
        await t.failed(f"account-{n}", ATTACKER)
    assert await wait_required(t, "account-99", ATTACKER) is None
    await t.failed("account-4", ATTACKER)  # the fifth distinct account
    assert await wait_required(t, "account-99", ATTACKER) == (10, "stuffing")
    # The same account again does not count as another distinct account.
    clock.now += 10
    await t.failed("account-4", ATTACKER)
    assert await wait_required(t, "account-99", ATTACKER) is None
    await t.failed("account-5", ATTACKER)
    assert await wait_required(t, "account-99", ATTACKER) == (20, "stuffing")
    # Other addresses are untouched.
    assert await wait_required(t, "account-99", VICTIM_IP) is None


async def test_ip_limit_across_accounts() -> None:
    clock = Clock()
    t = throttle(clock, ip_free_attempts=3, stuffing_accounts=100, free_attempts=100)
    for _ in range(4):
        await t.failed("a", ATTACKER)
    assert await wait_required(t, "b", ATTACKER) == (1, "ip")


async def test_addresses_of_one_ipv6_network_count_as_one_client() -> None:
    clock = Clock()
    t = throttle(clock, stuffing_accounts=3, base_delay=10.0)
    for n in range(3):  # a new address of the same /64 for every attempt
        await t.failed(f"account-{n}", f"2001:db8:5:6::{n + 1}")
    assert await wait_required(t, "account-99", "2001:db8:5:6:ffff::1") == (10, "stuffing")
    assert await wait_required(t, "account-99", "2001:db8:5:7::1") is None  # the next /64


async def test_ipv4_mapped_addresses_count_as_ipv4() -> None:
    clock = Clock()
    t = throttle(clock, free_attempts=2)
    for _ in range(3):
        await t.failed("app", f"::ffff:{ATTACKER}")
    assert await wait_required(t, "app", ATTACKER) == (1, "account_ip")


async def test_attacker_cannot_lock_the_victim_out() -> None:
    clock = Clock()
    t = throttle(clock, free_attempts=3, account_free_attempts=5, account_max_delay=30.0)
    await t.succeeded("app", VICTIM_IP)  # the victim's usual address
    for n in range(200):  # a distributed attack on the account
        await t.failed("app", f"203.0.113.{n % 250}")
    # From a new address the account-wide delay applies, but it is bounded ...
    waited = await wait_required(t, "app", "192.0.2.1")
    assert waited is not None and waited[1] == "account" and waited[0] <= 30
    # ... and from the victim's proven address there is none at all.
    assert await wait_required(t, "app", VICTIM_IP) is None
    # The lock that grows is the attacker's own pair.
    for _ in range(10):
        await t.failed("app", ATTACKER)
    waited = await wait_required(t, "app", ATTACKER)
    assert waited is not None and waited[0] > 30 and waited[1] == "account_ip"


async def test_accounts_are_not_stored_in_clear(redis_url: str, redis_prefix: str) -> None:
    state = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
    try:
        t = LoginThrottle(state, kind="client", policy=ThrottlePolicy(free_attempts=1))
        await t.failed("secret-client-name", ATTACKER)
        await t.failed("secret-client-name", ATTACKER)
        with pytest.raises(LoginThrottledError) as info:
            await t.check("secret-client-name", ATTACKER)
        assert info.value.scope == "account_ip"
        keys = [k.decode() async for k in state.client.scan_iter(match=redis_prefix + "*")]
        assert keys and not any("secret-client-name" in k for k in keys)
    finally:
        await state.close()


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="free_attempts must be a whole number >= 1, not 0"):
        ThrottlePolicy(free_attempts=0)
    with pytest.raises(ValueError, match="max_delay must be a positive number of seconds"):
        ThrottlePolicy(max_delay=0)
