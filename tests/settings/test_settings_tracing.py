"""The tracing section: defaults, shorthand, and bad values with their exact messages."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


def test_defaults_leave_tracing_off(load: Load) -> None:
    tracing = load().tracing
    assert tracing.enabled is False
    assert tracing.otlp_endpoint == "http://127.0.0.1:4318/v1/traces"
    assert tracing.service_name == "bastion"
    assert tracing.sample_ratio == 1.0


def test_full_section_and_environment(load: Load) -> None:
    tracing = load(
        "tracing:\n  enabled: true\n  otlp_endpoint: https://otel.example.com:4318/v1/traces/\n"
        "  service_name: edge-gw\n  sample_ratio: 0.25\n"
    ).tracing
    assert tracing.enabled is True
    assert tracing.otlp_endpoint == "https://otel.example.com:4318/v1/traces"
    assert tracing.service_name == "edge-gw"
    assert tracing.sample_ratio == 0.25
    assert load(None, {"BASTION_TRACING__ENABLED": "true"}).tracing.enabled is True


def test_boolean_shorthand(load: Load) -> None:
    assert load("tracing: true\n").tracing.enabled is True


def test_endpoint_must_be_an_http_url(errors: Errors) -> None:
    assert errors("tracing:\n  otlp_endpoint: grpc://collector:4317\n") == [
        "tracing.otlp_endpoint: 'grpc://collector:4317' is not an absolute http(s) URL — use "
        "e.g. http://127.0.0.1:4318/v1/traces"
    ]


def test_sample_ratio_is_a_fraction(errors: Errors) -> None:
    assert errors("tracing:\n  sample_ratio: 1.5\n") == [
        "tracing.sample_ratio: 1.5 is too large — use a number of at most 1"
    ]
    assert errors("tracing:\n  sample_ratio: -0.1\n") == [
        "tracing.sample_ratio: -0.1 is too small — use a number of at least 0"
    ]


def test_service_name_must_be_set(errors: Errors) -> None:
    assert errors("tracing:\n  service_name: ''\n") == [
        "tracing.service_name: '' is not a service name — use e.g. bastion"
    ]


def test_enabled_without_the_packages_names_the_extra(
    errors: Errors, load: Load, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bastion.settings.monitoring.tracing_installed", lambda: False)
    assert errors("tracing:\n  enabled: true\n") == [
        "tracing.enabled: true needs OpenTelemetry — run `pip install 'bastion[tracing]'`, "
        "or set tracing.enabled to false"
    ]
    assert load("tracing:\n  enabled: false\n").tracing.enabled is False


def test_unknown_key_is_refused(errors: Errors) -> None:
    assert errors("tracing:\n  endpoint: http://x\n") == [
        "tracing.endpoint: unknown key — did you mean 'otlp_endpoint'?"
    ]
