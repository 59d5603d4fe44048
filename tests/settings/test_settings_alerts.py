"""The ``alerts`` section: defaults, webhooks with env: secrets, and exact error lines."""

from __future__ import annotations

from collections.abc import Callable

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


def test_defaults(load: Load) -> None:
    alerts = load().alerts
    assert alerts.enabled is True
    assert alerts.dedup_window == 900
    assert alerts.webhooks == []
    d = alerts.detectors
    assert (d.brute_force.failures, d.brute_force.window) == (10, 300)
    assert (d.ip_failures.failures, d.ip_failures.window) == (100, 600)
    assert (d.credential_stuffing.accounts, d.credential_stuffing.window) == (20, 600)
    spike = d.denial_spike
    assert (spike.per, spike.interval, spike.alpha, spike.z, spike.min_count) == (
        ["route", "key"],
        60,
        0.1,
        4.0,
        20,
    )
    assert spike.statuses == [401, 403, 429]
    assert (d.new_network.ipv4_prefix, d.new_network.ipv6_prefix) == (16, 48)
    delivery = alerts.delivery
    assert (delivery.max_attempts, delivery.backoff, delivery.max_backoff) == (6, 1, 300)
    assert delivery.dead_letter_file is None


def test_webhook_with_env_secret_and_durations(load: Load) -> None:
    text = (
        "alerts:\n"
        "  dedup_window: 5m\n"
        "  detectors: {brute_force: {failures: 3, window: 30s}}\n"
        "  webhooks:\n"
        "    - {url: 'https://hooks.example.com/b', secret: env:HOOK_SECRET, events: [token.*]}\n"
        "  delivery: {backoff: 2s, max_backoff: 1m, timeout: 3s}\n"
    )
    alerts = load(text, {"HOOK_SECRET": "s" * 32}).alerts
    assert alerts.dedup_window == 300
    assert alerts.detectors.brute_force.failures == 3
    (hook,) = alerts.webhooks
    assert hook.secret.get_secret_value() == "s" * 32
    assert hook.events == ["token.*"]
    assert "s" * 32 not in repr(hook)
    assert (alerts.delivery.backoff, alerts.delivery.max_backoff) == (2, 60)


def test_bad_webhooks_name_the_key_and_the_fix(errors: Errors) -> None:
    text = (
        "alerts:\n"
        "  webhooks:\n"
        "    - {url: hooks.example.com, secret: x1y2z3, events: ['Alert Raised']}\n"
        "    - {url: 'https://u:pw@hooks.example.com/', secret: '0123456789abcdef', events: []}\n"
        "    - {url: 'https://hooks.example.com/'}\n"
    )
    assert errors(text) == [
        "alerts.webhooks[0].url: 'hooks.example.com' is not an absolute http(s) URL — use e.g. "
        "https://hooks.example.com/bastion",
        "alerts.webhooks[0].secret: is shorter than 16 characters — use a random secret, e.g. "
        "the output of `openssl rand -hex 32`, preferably as env:NAME",
        "alerts.webhooks[0].events[0]: 'Alert Raised' is not an event type — use e.g. "
        "alert.raised, token.* or *",
        "alerts.webhooks[1].url: contains a user name or password — remove it; deliveries are "
        "authenticated by their signature",
        "alerts.webhooks[1].events: is empty — list event types, e.g. [alert.raised], or remove it",
        "alerts.webhooks[2].secret: is required — add it",
    ]


def test_short_secret_is_not_echoed(errors: Errors) -> None:
    text = "alerts: {webhooks: [{url: 'https://h.example.com', secret: hunter2}]}\n"
    (line,) = errors(text)
    assert "hunter2" not in line


def test_bad_thresholds(errors: Errors) -> None:
    text = (
        "alerts:\n"
        "  dedup_window: 0\n"
        "  detectors:\n"
        "    brute_force: {failures: 0}\n"
        "    credential_stuffing: {accounts: 1}\n"
        "    denial_spike: {per: [ip], alpha: 1.5, z: 0, statuses: [200]}\n"
        "    new_network: {ipv4_prefix: 33}\n"
        "  delivery: {backoff: 10m, max_backoff: 1m}\n"
    )
    lines = errors(text)
    assert [line.split(":")[0] for line in lines] == [
        "alerts.dedup_window",
        "alerts.detectors.brute_force.failures",
        "alerts.detectors.credential_stuffing.accounts",
        "alerts.detectors.denial_spike.per[0]",
        "alerts.detectors.denial_spike.alpha",
        "alerts.detectors.denial_spike.z",
        "alerts.detectors.denial_spike.statuses[0]",
        "alerts.detectors.new_network.ipv4_prefix",
        "alerts.delivery",
    ]
    assert lines[-1] == (
        "alerts.delivery: backoff (600s) exceeds max_backoff (60s) — lower backoff or raise "
        "max_backoff"
    )


def test_unknown_detector_key_is_refused(errors: Errors) -> None:
    (line,) = errors("alerts: {detectors: {brute_forse: {failures: 3}}}\n")
    assert line == "alerts.detectors.brute_forse: unknown key — did you mean 'brute_force'?"
