"""The ``ratelimit`` section: defaults and exact error lines."""

from __future__ import annotations

from collections.abc import Callable

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


def test_defaults(load: Load) -> None:
    limits = load().ratelimit
    assert (limits.key_limits_fail, limits.node_heartbeat) == ("closed", 5.0)
    login = limits.login
    assert (login.enabled, login.free_attempts, login.stuffing_accounts) == (True, 5, 10)
    assert (login.base_delay, login.max_delay, login.account_max_delay) == (1.0, 900.0, 30.0)
    shedding = limits.shedding
    assert (shedding.enabled, shedding.initial_limit, shedding.target_latency) == (False, 20, 0.5)


def test_durations_and_environment(load: Load) -> None:
    settings = load(
        "ratelimit: {login: {base_delay: 250ms, max_delay: 2m}, shedding: {enabled: true}}\n",
        {"BASTION_RATELIMIT__KEY_LIMITS_FAIL": "open"},
    )
    assert settings.ratelimit.login.base_delay == 0.25
    assert settings.ratelimit.login.max_delay == 120.0
    assert settings.ratelimit.shedding.enabled is True
    assert settings.ratelimit.key_limits_fail == "open"


def test_bad_values_name_key_and_fix(errors: Errors) -> None:
    assert errors(
        "ratelimit:\n"
        "  key_limits_fail: maybe\n"
        "  node_heartbeat: 0\n"
        "  login: {free_attempts: 0}\n"
        "  shedding: {backoff: 1, initial_limit: 0}\n"
    ) == [
        "ratelimit.key_limits_fail: 'maybe' is not allowed — use 'open' or 'closed'",
        "ratelimit.node_heartbeat: 0 is too small — use a number greater than 0",
        "ratelimit.login.free_attempts: 0 is too small — use a number of at least 1",
        "ratelimit.shedding.initial_limit: 0 is too small — use a number of at least 1",
        "ratelimit.shedding.backoff: 1 is too large — use a number less than 1",
    ]


def test_cross_checks(errors: Errors) -> None:
    assert errors("ratelimit: {login: {base_delay: 1h, max_delay: 1m}}\n") == [
        "ratelimit.login.base_delay: 3600s is longer than max_delay (60s) — lower base_delay "
        "or raise max_delay"
    ]
    assert errors("ratelimit: {shedding: {initial_limit: 5000}}\n") == [
        "ratelimit.shedding.initial_limit: 5000 must lie between min_limit (1) and max_limit "
        "(1000) — change one of the three"
    ]
    assert errors("ratelimit: {login: {window: 0}}\n") == [
        "ratelimit.login.window: must be more than 0 seconds — e.g. 1s, 15m, 1h"
    ]
    assert errors("ratelimit: {unknown: 1}\n") == [
        "ratelimit.unknown: unknown key — remove it (keys here: key_limits_fail, "
        "node_heartbeat, login, shedding, risk)"
    ]


def test_risk_tightening_settings() -> None:
    from bastion.settings import SettingsError, load_settings

    settings = load_settings(None, {})
    assert (settings.ratelimit.risk.enabled, settings.ratelimit.risk.factor) == (True, 4)
    assert settings.ratelimit.risk.duration == 900.0
    try:
        load_settings(None, {"BASTION_RATELIMIT__RISK__FACTOR": "1"})
    except SettingsError as exc:
        assert str(exc) == (
            "BASTION_RATELIMIT__RISK__FACTOR: 1 is too small — use a number of at least 2"
        )
    else:
        raise AssertionError("a factor of 1 must be refused")
