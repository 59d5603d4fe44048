"""The ``ratelimit`` section: rate limiting beyond the routes' ``limits`` — per-key limits
while Redis is down, login throttling, load shedding and risk tightening.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from bastion.settings._values import Loc, Problems
from bastion.settings.fields import Count, Duration, Seconds, _duration, _not_bool, _Section


class LoginThrottleSettings(_Section):
    """Brute-force throttling of credential checks (ratelimit/login.py): counts and seconds.

    Applied today to client authentication at the token endpoint; login and MFA
    use the same settings when they arrive.
    """

    enabled: bool = True
    free_attempts: Count = 5  # failures of one account from one address before delays
    ip_free_attempts: Count = 50  # failures from one address (any account) before delays
    stuffing_accounts: Count = 10  # distinct failing accounts from one address: IP locked
    base_delay: Duration = 1.0  # first delay; doubles with every further failure
    max_delay: Duration = 900.0
    account_free_attempts: Count = 20  # failures of one account from any address
    account_max_delay: Duration = 30.0  # bounded: an attacker cannot lock the account out
    window: Duration = 3600.0  # how long failures are remembered
    known_for: Duration = 2592000.0  # an address that succeeded skips the account-wide delay

    @model_validator(mode="after")
    def _check_delays(self) -> LoginThrottleSettings:
        problems: list[tuple[Loc, str]] = []
        delays = {
            "base_delay": self.base_delay,
            "max_delay": self.max_delay,
            "account_max_delay": self.account_max_delay,
            "window": self.window,
            "known_for": self.known_for,
        }
        for name, seconds in delays.items():
            if seconds <= 0:
                problems.append(((name,), "must be more than 0 seconds — e.g. 1s, 15m, 1h"))
        if not problems and self.base_delay > self.max_delay:
            problems.append(
                (
                    ("base_delay",),
                    f"{self.base_delay:g}s is longer than max_delay ({self.max_delay:g}s) — "
                    "lower base_delay or raise max_delay",
                )
            )
        if problems:
            raise Problems(problems)
        return self


class LoadSheddingSettings(_Section):
    """Adaptive concurrency limit per route's upstream (``native/src/limit/shedding.rs``, AIMD).

    The limit of concurrent requests per route grows by one per window of
    requests answered under ``target_latency`` and shrinks by ``backoff`` when
    latency exceeds it; requests beyond the limit are shed with 503 +
    ``Retry-After`` before they reach the upstream.
    """

    enabled: bool = False
    initial_limit: Count = 20
    min_limit: Count = 1
    max_limit: Count = 1000
    target_latency: Duration = 0.5
    backoff: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, lt=1)] = 0.9

    @model_validator(mode="after")
    def _check_bounds(self) -> LoadSheddingSettings:
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise Problems(
                [
                    (
                        ("initial_limit",),
                        f"{self.initial_limit} must lie between min_limit ({self.min_limit}) "
                        f"and max_limit ({self.max_limit}) — change one of the three",
                    )
                ]
            )
        if self.target_latency <= 0:
            raise Problems([(("target_latency",), "must be more than 0 seconds — e.g. 500ms")])
        return self


class RiskTighteningSettings(_Section):
    """Tighter limits for what the anomaly detectors flag (ratelimit/risk.py).

    When an alert names an address, API key, subject or client (brute force,
    credential stuffing, IP failures, denial spikes, a new network), every rate
    limit applying to its requests is divided by ``factor`` for ``duration``.
    """

    enabled: bool = True
    factor: Annotated[int, BeforeValidator(_not_bool), Field(ge=2, le=1000)] = 4
    duration: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=7 * 86400)] = 900.0


class RateLimitSettings(_Section):
    """Rate limiting beyond the routes' ``limits``: per-key limits, outages, throttles."""

    # What a request's per-API-key limits do while Redis is unreachable (route limits
    # say it per limit): closed answers 503, open decides locally with this node's share.
    key_limits_fail: Literal["open", "closed"] = "closed"
    # How often each node announces itself, so the fail-open share is limit / live nodes.
    node_heartbeat: Seconds = 5.0
    login: LoginThrottleSettings = Field(default_factory=LoginThrottleSettings)
    shedding: LoadSheddingSettings = Field(default_factory=LoadSheddingSettings)
    risk: RiskTighteningSettings = Field(default_factory=RiskTighteningSettings)
