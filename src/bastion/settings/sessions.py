"""The ``sessions`` section: how long a browser session lives (``interaction/sessions.py``).

A session ends at whichever comes first: ``idle_timeout`` seconds without a
request that uses it, or ``absolute_timeout`` seconds after the login that
started it (OWASP ASVS 5.0 V7.3). Short values are allowed, so that tests can
watch a session expire.
"""

from __future__ import annotations

from pydantic import model_validator

from bastion.settings.fields import PositiveDuration, _Section


class SessionSettings(_Section):
    """Browser sessions: their idle and absolute timeouts (a duration: ``30m``, ``12h``)."""

    idle_timeout: PositiveDuration = 1800.0  # 30 minutes without a request
    absolute_timeout: PositiveDuration = 43200.0  # 12 hours after the login

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> SessionSettings:
        if self.idle_timeout > self.absolute_timeout:
            raise ValueError(
                f"idle_timeout ({self.idle_timeout:g} s) is longer than absolute_timeout "
                f"({self.absolute_timeout:g} s) — make it shorter, e.g. idle_timeout: 30m"
            )
        return self


__all__ = ["SessionSettings"]
