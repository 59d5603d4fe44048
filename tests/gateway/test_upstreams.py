"""Round-robin choice and passive health of a route's targets (no sockets: loop time given)."""

from __future__ import annotations

import logging

import pytest

from bastion.gateway.matcher import parse_upstream
from bastion.gateway.upstreams import HealthBook, HealthPolicy, Targets

A = parse_upstream("http://a.internal:1")
B = parse_upstream("http://b.internal:2")
C = parse_upstream("http://c.internal:3")


def test_round_robin_over_healthy_targets() -> None:
    targets, book = Targets([A, B, C]), HealthBook()
    assert [targets.choose(book, 0.0) for _ in range(4)] == [A, B, C, A]


def test_consecutive_failures_eject_then_half_open_probe_with_backoff() -> None:
    policy = HealthPolicy(failures=2, cooldown=10.0, max_cooldown=25.0)
    targets, book = Targets([A, B], policy), HealthBook()
    state = book.of(A)
    state.failed(0.0, policy)
    assert not state.ejected(0.0)  # one failure is not enough
    state.succeeded()
    state.failed(0.0, policy)
    assert not state.ejected(0.0)  # "consecutive": the success reset the count
    state.failed(1.0, policy)
    assert state.ejected(1.0) and state.ejected_until == 11.0
    assert [targets.choose(book, 5.0) for _ in range(3)] == [B, B, B]
    # Cool-down over: exactly one request probes A while the others go to B.
    picks = [targets.choose(book, 11.0) for _ in range(4)]
    assert picks.count(A) == 1 and picks.count(B) == 3
    state.failed(11.5, policy)  # the probe failed: twice the cool-down
    assert state.ejected_until == 31.5
    assert targets.choose(book, 31.5) in (A, B)
    state.failed(31.6, policy)  # capped by max_cooldown
    assert state.ejected_until == 31.6 + 25.0
    assert targets.choose(book, 57.0) is not None
    state.succeeded()  # a good probe restores the target and resets the backoff
    assert not state.ejected(57.0) and state.backoff == 0.0


def test_all_ejected_chooses_none_and_says_when_to_retry() -> None:
    policy = HealthPolicy(failures=1, cooldown=4.0)
    targets, book = Targets([A, B], policy), HealthBook()
    book.of(A).failed(0.0, policy)
    book.of(B).failed(1.0, policy)
    assert targets.choose(book, 2.0) is None
    assert targets.retry_after(book, 2.0) == 2


def test_exclude_skips_tried_targets() -> None:
    targets, book = Targets([A, B]), HealthBook()
    assert targets.choose(book, 0.0, (A,)) == B
    assert targets.choose(book, 0.0, (A, B)) is None


def test_released_probe_lets_another_request_probe() -> None:
    policy = HealthPolicy(failures=1, cooldown=1.0)
    targets, book = Targets([A], policy), HealthBook()
    book.of(A).failed(0.0, policy)
    assert targets.choose(book, 2.0) == A
    assert targets.choose(book, 2.0) is None  # the probe is in flight
    book.of(A).release()
    assert targets.choose(book, 2.0) == A


def test_health_is_per_address() -> None:
    book = HealthBook()
    assert book.of(parse_upstream("http://a.internal:1/x")) is book.of(A)
    assert book.of(B) is not book.of(A)


def test_failure_log_writes_one_line_per_target_and_cause_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bastion.gateway.errors import UpstreamTimeoutError, UpstreamUnavailableError
    from bastion.gateway.upstreams import FailureLog

    now = [100.0]
    failures = FailureLog(interval=10.0, clock=lambda: now[0])

    def refused(target: str) -> UpstreamUnavailableError:
        return UpstreamUnavailableError(
            "The upstream could not be reached.", cause="refused", target=target, note="refused"
        )

    with caplog.at_level(logging.WARNING, logger="bastion.gateway.upstreams"):
        for _ in range(5):
            failures.failed("orders", refused("http://a:1"))
        failures.failed("orders", refused("http://b:1"))  # another target: its own line
        timeout = UpstreamTimeoutError("x", cause="timeout", target="http://a:1", note="slow")
        failures.failed("orders", timeout)  # another cause: its own line
        now[0] += 10.0
        failures.failed("orders", refused("http://a:1"))
    assert [record.getMessage() for record in caplog.records] == [
        "upstream failed: route=orders target=http://a:1 cause=refused (refused) "
        "-> 502 upstream_unavailable",
        "upstream failed: route=orders target=http://b:1 cause=refused (refused) "
        "-> 502 upstream_unavailable",
        "upstream failed: route=orders target=http://a:1 cause=timeout (slow) "
        "-> 504 upstream_timeout",
        "upstream failed: route=orders target=http://a:1 cause=refused (refused) "
        "-> 502 upstream_unavailable (+4 more in the last 10 s)",
    ]
    assert all(record.exc_info is None for record in caplog.records)
