"""The ``alerts`` section: anomaly detectors over the audit events, and webhook delivery."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from bastion.settings._values import Loc, Problems, show
from bastion.settings.fields import (
    Count,
    FilePath,
    PositiveDuration,
    _absolute_http_url,
    _not_bool,
    _Section,
)

_EVENT_PATTERN = re.compile(r"[a-z0-9_*]+(?:\.[a-z0-9_*]+)*")


class BruteForceSettings(_Section):
    """One account failing ``failures`` times within ``window``."""

    enabled: bool = True
    failures: Count = 10
    window: PositiveDuration = 300.0


class IpFailuresSettings(_Section):
    """One IP failing ``failures`` times within ``window`` (any account, gateway 401s)."""

    enabled: bool = True
    failures: Count = 100
    window: PositiveDuration = 600.0


class CredentialStuffingSettings(_Section):
    """One IP failing on ``accounts`` distinct accounts within ``window``."""

    enabled: bool = True
    accounts: Annotated[int, BeforeValidator(_not_bool), Field(ge=2)] = 20
    window: PositiveDuration = 600.0


SpikeDimension = Literal["route", "key"]
_SPIKE_DIMENSIONS: tuple[SpikeDimension, ...] = ("route", "key")


class DenialSpikeSettings(_Section):
    """401/403/429 spikes per route and per key: EWMA + z-score over per-interval counts."""

    enabled: bool = True
    per: list[SpikeDimension] = Field(default_factory=lambda: list(_SPIKE_DIMENSIONS))
    interval: PositiveDuration = 60.0
    alpha: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1)] = 0.1
    z: Annotated[float, BeforeValidator(_not_bool), Field(gt=0)] = 4.0
    min_count: Count = 20
    statuses: list[Annotated[int, BeforeValidator(_not_bool), Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [401, 403, 429]
    )


class NewNetworkSettings(_Section):
    """A key or subject used from a network it was not seen in before."""

    enabled: bool = True
    ipv4_prefix: Annotated[int, BeforeValidator(_not_bool), Field(ge=8, le=32)] = 16
    ipv6_prefix: Annotated[int, BeforeValidator(_not_bool), Field(ge=16, le=128)] = 48
    max_networks: Count = 8


class TokenReuseSettings(_Section):
    """Refresh-token and authorization-code reuse (always an alert)."""

    enabled: bool = True


class DetectorSettings(_Section):
    """The detectors and their thresholds; ``max_tracked`` bounds each detector's memory."""

    max_tracked: Count = 100_000
    brute_force: BruteForceSettings = Field(default_factory=BruteForceSettings)
    ip_failures: IpFailuresSettings = Field(default_factory=IpFailuresSettings)
    credential_stuffing: CredentialStuffingSettings = Field(
        default_factory=CredentialStuffingSettings
    )
    denial_spike: DenialSpikeSettings = Field(default_factory=DenialSpikeSettings)
    new_network: NewNetworkSettings = Field(default_factory=NewNetworkSettings)
    token_reuse: TokenReuseSettings = Field(default_factory=TokenReuseSettings)


class WebhookSettings(_Section):
    """One webhook receiver: URL, HMAC signing secret, and which event types it gets."""

    url: str
    secret: SecretStr
    name: str = ""
    # Event types or patterns (token.*, *); alert.raised carries the alerts.
    events: list[str] = Field(default_factory=lambda: ["alert.raised"])

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = _absolute_http_url(value, "https://hooks.example.com/bastion")
        if "@" in parts.netloc:
            raise ValueError(
                "contains a user name or password — remove it; deliveries are authenticated "
                "by their signature"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError(
                "is shorter than 16 characters — use a random secret, e.g. the output of "
                "`openssl rand -hex 32`, preferably as env:NAME"
            )
        return value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("is empty — list event types, e.g. [alert.raised], or remove it")
        problems: list[tuple[Loc, str]] = []
        for index, pattern in enumerate(value):
            if not isinstance(pattern, str) or not _EVENT_PATTERN.fullmatch(pattern):
                problems.append(
                    (
                        (index,),
                        f"{show(pattern)} is not an event type — use e.g. alert.raised, "
                        "token.* or *",
                    )
                )
        if problems:
            raise Problems(problems)
        return value


class WebhookDeliverySettings(_Section):
    """How webhooks are delivered: retries with exponential backoff, timeouts, dead letters."""

    max_attempts: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=20)] = 6
    backoff: PositiveDuration = 1.0
    max_backoff: PositiveDuration = 300.0
    timeout: PositiveDuration = 5.0
    max_queue: Count = 10_000
    workers: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=32)] = 4
    # JSON lines of deliveries that failed for good; default {data_dir}/webhook-dead-letters.jsonl
    dead_letter_file: FilePath | None = None

    @model_validator(mode="after")
    def _backoff_order(self) -> WebhookDeliverySettings:
        if self.backoff > self.max_backoff:
            raise ValueError(
                f"backoff ({self.backoff:g}s) exceeds max_backoff ({self.max_backoff:g}s) — "
                "lower backoff or raise max_backoff"
            )
        return self


class AlertSettings(_Section):
    """Anomaly detectors over the audit events, alert deduplication, webhook delivery."""

    enabled: bool = True
    # Alerts with the same type and key within this window are folded into one.
    dedup_window: PositiveDuration = 900.0
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    delivery: WebhookDeliverySettings = Field(default_factory=WebhookDeliverySettings)
