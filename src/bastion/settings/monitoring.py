"""What bastion records and exports: ``audit`` (the audit log), ``metrics`` (Prometheus)
and ``tracing`` (OpenTelemetry). The alert detectors: :mod:`bastion.settings.alerts`.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from bastion.settings._values import Problems, show
from bastion.settings.fields import FilePath, _duration, _http_url, _not_bool, _Section
from bastion.settings.server import _SideListenSettings

#: How to install what ``tracing.enabled: true`` needs.
INSTALL_HINT = "pip install 'bastion[tracing]'"


def tracing_installed() -> bool:
    """Whether the OpenTelemetry SDK and its OTLP/HTTP exporter can be imported."""
    try:
        return all(
            importlib.util.find_spec(name) is not None
            for name in ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http")
        )
    except ModuleNotFoundError:  # a parent package ("opentelemetry") is missing
        return False


def _retention(value: object) -> object:
    # "none" / "forever" (or null): keep every audit record.
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "forever")):
        return None
    seconds = _duration(value)
    if isinstance(seconds, int | float) and seconds < 86400:
        raise ValueError(
            f"{show(value)} is shorter than a day — use e.g. 90d or 365d, or none to keep "
            "every record"
        )
    return seconds


class AuditSettings(_Section):
    """The audit log: retention, JSON-lines copy, and the writer's batching."""

    # Records older than this are pruned (chains stay verifiable through checkpoints).
    retention: Annotated[float | None, BeforeValidator(_retention)] = 365 * 86400.0
    file: FilePath | None = None  # also append every event here as JSON lines
    batch_size: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=10_000)] = 500
    flush_interval: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 1.0
    max_queue: Annotated[int, BeforeValidator(_not_bool), Field(ge=1000)] = 100_000
    checkpoint_interval: Annotated[float, BeforeValidator(_duration), Field(ge=10)] = 300.0


class MetricsListenSettings(_SideListenSettings):
    """A separate plain-HTTP listener that serves only ``/metrics``."""


class MetricsSettings(_Section):
    """Prometheus ``/metrics``: on the main port (default) or only on a listener of its own.

    Without ``token``, the main port answers ``/metrics`` only to loopback clients
    (not through a trusted proxy) and a separate ``listen`` answers everyone who can
    reach it; with ``token``, every scrape must send ``Authorization: Bearer <token>``.
    """

    enabled: bool = True
    listen: MetricsListenSettings | None = None
    token: SecretStr | None = None

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if len(text) < 16 or any(c.isspace() or not c.isprintable() for c in text):
            raise ValueError(
                "is shorter than 16 characters or contains spaces — use a long random value, "
                "e.g. the output of `openssl rand -hex 32`, via env:BASTION_METRICS_TOKEN"
            )
        return value


class TracingSettings(_Section):
    """Optional OpenTelemetry tracing of gateway requests, exported over OTLP/HTTP.

    Needs ``pip install 'bastion[tracing]'``; see docs/metrics.md, "Tracing".
    """

    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "bastion"
    sample_ratio: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1)] = 1.0

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _http_url(value, "http://127.0.0.1:4318/v1/traces")

    @field_validator("service_name")
    @classmethod
    def _check_service_name(cls, value: str) -> str:
        if not value or len(value) > 100 or not value.isprintable():
            raise ValueError(f"{show(value)} is not a service name — use e.g. bastion")
        return value

    @model_validator(mode="after")
    def _check_installed(self) -> TracingSettings:
        if self.enabled and not tracing_installed():
            raise Problems(
                [
                    (
                        ("enabled",),
                        f"true needs OpenTelemetry — run `{INSTALL_HINT}`, or set "
                        "tracing.enabled to false",
                    )
                ]
            )
        return self
