"""The ``users`` section: the password policy and the argon2id parameters.

The policy follows OWASP ASVS 5.0 (V6.2): at least 8 characters (12 by default),
at least 128 allowed, no composition rules, nothing truncated or case-folded, and
refused when it is in the bundled list of common passwords (``users/policy.py``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from bastion.settings.fields import _Section

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


class UserSettings(_Section):
    """User accounts (``bastion users``, ``/admin/api/v1/users``)."""

    password: PasswordSettings = Field(default_factory=PasswordSettings)


__all__ = [
    "MAX_PASSWORD_LENGTH_FLOOR",
    "MIN_PASSWORD_LENGTH_FLOOR",
    "OWASP_ARGON2ID",
    "Argon2Settings",
    "PasswordSettings",
    "UserSettings",
]
