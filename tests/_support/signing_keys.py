"""What the signing-key lifecycle tests share: an injected clock's origin and settings.

``make_settings`` gives short, round lifetimes (``HOLD`` is how long a superseded key stays
published) and 2048-bit RSA keys (the RS256 key generates faster; the lifecycle is the same).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bastion.settings import Settings

T0 = 1_900_000_000.0
PREPUBLISH = 900.0
MAX_TTL = 3600.0
LEEWAY = 30.0
HOLD = MAX_TTL + LEEWAY
ISSUER = "https://issuer.example"


def at(seconds: float) -> datetime:
    """``seconds`` since the epoch as an aware UTC datetime (how the store returns times)."""
    return datetime.fromtimestamp(seconds, UTC)


def make_settings(**signing_keys: Any) -> Settings:
    """Settings with ``signing_keys`` over the tests' prepublication, lifetimes and RSA size."""
    return Settings(
        issuer=ISSUER,
        signing_keys={"prepublish": PREPUBLISH, "rsa_key_size": 2048, **signing_keys},
        tokens={"max_access_token_ttl": MAX_TTL, "access_token_ttl": 900, "leeway": LEEWAY},
    )
