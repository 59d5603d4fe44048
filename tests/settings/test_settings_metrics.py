"""The metrics section: defaults, the separate listener, the scrape token, and bad values."""

from __future__ import annotations

from collections.abc import Callable

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


def test_defaults_serve_metrics_on_the_main_port_without_a_token(load: Load) -> None:
    settings = load()
    assert settings.metrics.enabled is True
    assert settings.metrics.listen is None
    assert settings.metrics.token is None


def test_separate_listener_and_token_from_the_environment(load: Load) -> None:
    settings = load(
        "metrics:\n  listen: {port: 9464}\n  token: env:SCRAPE\n",
        {"SCRAPE": "0123456789abcdef0123"},
    )
    assert settings.metrics.listen is not None
    assert (settings.metrics.listen.host, settings.metrics.listen.port) == ("127.0.0.1", 9464)
    assert settings.metrics.token is not None
    assert settings.metrics.token.get_secret_value() == "0123456789abcdef0123"
    assert "0123456789abcdef0123" not in repr(settings)


def test_boolean_shorthand_and_environment_override(load: Load) -> None:
    assert load("metrics: false\n").metrics.enabled is False
    assert load(None, {"BASTION_METRICS__ENABLED": "false"}).metrics.enabled is False


def test_listener_port_must_be_a_port(errors: Errors) -> None:
    assert errors("metrics:\n  listen: {port: 70000}\n") == [
        "metrics.listen.port: 70000 is not a valid port — use a number from 1 to 65535"
    ]


def test_listener_needs_a_port(errors: Errors) -> None:
    assert errors("metrics:\n  listen: {host: 0.0.0.0}\n") == [
        "metrics.listen.port: is required — add it"
    ]


def test_listener_host_must_be_a_host(errors: Errors) -> None:
    assert errors("metrics:\n  listen: {host: 'a b', port: 9464}\n") == [
        "metrics.listen.host: 'a b' is not a host name or IP address — use e.g. 0.0.0.0 or "
        "127.0.0.1"
    ]


def test_listener_cannot_share_the_main_port(errors: Errors) -> None:
    assert errors("listen: {port: 9000}\nmetrics:\n  listen: {port: 9000}\n") == [
        "metrics.listen.port: 9000 is also listen.port — the metrics listener needs a port of "
        "its own (e.g. 9464), or remove metrics.listen to serve /metrics on the main port"
    ]


def test_short_token_is_refused_and_not_echoed(errors: Errors) -> None:
    lines = errors("metrics:\n  token: env:SCRAPE\n", {"SCRAPE": "short-secret"})
    assert lines == [
        "metrics.token: is shorter than 16 characters or contains spaces — use a long random "
        "value, e.g. the output of `openssl rand -hex 32`, via env:BASTION_METRICS_TOKEN"
    ]
    assert "short-secret" not in "".join(lines)


def test_unknown_key_is_refused(errors: Errors) -> None:
    assert errors("metrics:\n  port: 9464\n") == [
        "metrics.port: unknown key — remove it (keys here: enabled, listen, token)"
    ]
