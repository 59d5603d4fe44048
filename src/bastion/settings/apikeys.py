"""The ``api_keys`` section: key format, pepper, rotation grace, leak reports, exchanges."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from bastion.settings.fields import Duration, _Section
from bastion.settings.rates import Limit


class ApiKeySettings(_Section):
    """API keys: the recognisable format, an optional pepper, rotation grace, leak reports."""

    # Keys read bst_<environment>_<random><checksum>; the tag helps people (and secret
    # scanners) tell live keys from test keys. None: no tag.
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,9}$")] | None = None
    # Optional server-side pepper: stored digests become HMAC-SHA256(pepper, key), so a
    # stolen database alone cannot confirm a guessed key. Changing it invalidates keys.
    pepper: SecretStr | None = None
    default_grace: Duration = 86400.0
    # Shared secret authenticating POST /api-keys/leaks (HMAC-SHA256 of timestamp + body);
    # at least LEAK_REPORT_SECRET_MIN characters: it is all that stands between anyone and
    # revoking every key they can guess.
    leak_report_secret: SecretStr | None = None
    # Most RFC 8693 exchanges of one key for a token (a token lives 5 minutes, so a
    # service needs about one per 5 minutes); more are 429 rate_limited.
    exchange_rate: str = "30/minute"

    @field_validator("exchange_rate")
    @classmethod
    def _check_exchange_rate(cls, value: str) -> str:
        # Limit.parse raises ValueError naming the bad text and the expected form.
        Limit.parse(value)
        return value

    @field_validator("leak_report_secret")
    @classmethod
    def _long_leak_report_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < LEAK_REPORT_SECRET_MIN:
            raise ValueError(
                f"must be at least {LEAK_REPORT_SECRET_MIN} characters, not "
                f"{len(value.get_secret_value())} — generate one with `openssl rand -hex 32`"
            )
        return value


#: Shortest accepted ``api_keys.leak_report_secret``.
LEAK_REPORT_SECRET_MIN = 32
