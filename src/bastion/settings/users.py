"""The ``users`` section: the password policy and the argon2id parameters.

The policy follows OWASP ASVS 5.0 (V6.2): at least 8 characters (12 by default),
at least 128 allowed, no composition rules, nothing truncated or case-folded, and
refused when it is in the bundled list of common passwords (``users/policy.py``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from bastion.protocol.rfc6749.scope import is_scope_token
from bastion.settings.fields import Duration, _Section

#: ASVS 5.0 6.2.1: never fewer than 8 characters.
MIN_PASSWORD_LENGTH_FLOOR = 8
#: ASVS 5.0 6.2.9: at least 64 allowed; 6.2.x of issue 16: 128+.
MAX_PASSWORD_LENGTH_FLOOR = 128


#: OWASP Password Storage Cheat Sheet's argon2id configurations, (memory KiB, passes) at
#: p=1: equally strong, less memory traded for more passes. A setting must reach one.
OWASP_ARGON2ID = ((47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5))


class Argon2Settings(_Section):
    """argon2id cost: memory in KiB, passes, lanes; at least one of OWASP's configurations.

    Raising any of them makes every stored hash due for a rehash at its user's next
    login (the old hashes keep verifying meanwhile).
    """

    # Default: OWASP's m=19 MiB, t=2, p=1 (~25 ms per hash on one core).
    memory_kib: Annotated[int, Field(ge=7_168, le=4_194_304)] = 19_456
    time_cost: Annotated[int, Field(ge=1, le=100)] = 2
    parallelism: Annotated[int, Field(ge=1, le=64)] = 1

    @model_validator(mode="after")
    def _owasp_or_stronger(self) -> Argon2Settings:
        if not any(self.memory_kib >= m and self.time_cost >= t for m, t in OWASP_ARGON2ID):
            raise ValueError(
                f"memory_kib {self.memory_kib} with time_cost {self.time_cost} is weaker than "
                "OWASP's argon2id minimums — use e.g. memory_kib: 19456, time_cost: 2 "
                "(or 47104 with 1, 12288 with 3, 9216 with 4, 7168 with 5)"
            )
        return self


class PasswordSettings(_Section):
    """What a password must be: its length in characters (code points) and its hashing."""

    min_length: Annotated[int, Field(ge=MIN_PASSWORD_LENGTH_FLOOR, le=128)] = 12
    # Bounds the time one hash takes (argon2 reads every byte), far above any real password.
    max_length: Annotated[int, Field(ge=MAX_PASSWORD_LENGTH_FLOOR, le=4096)] = 1024
    argon2: Argon2Settings = Field(default_factory=Argon2Settings)


class SelfServiceKeySettings(_Section):
    """API keys users create for themselves on their account page (off by default).

    A user picks among ``scopes`` (none listed: keys without scopes, which pass only
    routes that require none); each key expires after ``lifetime`` and belongs to the
    user (``owner_type: user``), so it stops while the user is disabled and is revoked
    with them. A user holds at most ``max_per_user`` keys that are not revoked.
    """

    enabled: bool = False
    scopes: list[str] = Field(default_factory=list)
    max_per_user: Annotated[int, Field(ge=1, le=1000)] = 10
    lifetime: Duration = 90 * 86_400.0

    @field_validator("scopes")
    @classmethod
    def _check_scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not is_scope_token(scope):
                raise ValueError(
                    f"{scope[:60]!r} is not a scope (RFC 6749 §3.3: printable ASCII, no space, "
                    'no " or \\)'
                )
        return list(dict.fromkeys(value))

    @field_validator("lifetime")
    @classmethod
    def _check_lifetime(cls, value: float) -> float:
        if not 3600 <= value <= 3 * 365 * 86_400:
            raise ValueError("must be between 1h and 3 years (a self-service key always expires)")
        return value


class UserSettings(_Section):
    """User accounts (``bastion users``, ``/admin/api/v1/users``, the account page)."""

    password: PasswordSettings = Field(default_factory=PasswordSettings)
    self_service_keys: SelfServiceKeySettings = Field(default_factory=SelfServiceKeySettings)


__all__ = [
    "MAX_PASSWORD_LENGTH_FLOOR",
    "MIN_PASSWORD_LENGTH_FLOOR",
    "OWASP_ARGON2ID",
    "Argon2Settings",
    "PasswordSettings",
    "SelfServiceKeySettings",
    "UserSettings",
]
