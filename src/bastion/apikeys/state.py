"""What a stored API key is at a given moment, and whom it speaks for: the one home of both rules.

"Is this key usable" is decided here and only here — by the key service on
every verification (:meth:`~bastion.apikeys.ApiKeyService.verify`), by the
verifiers of tokens exchanged from a key (RFC 8693, the gateway's ``jwt``
method), by ``bastion doctor`` and by the ``status`` word of listings. The
key's subject (the ``sub`` of tokens obtained with it) is written here too.
``tests/apikeys/test_state.py`` pins both homes.

The native data plane decides the same from the record
:mod:`bastion.gateway.native_push` pushes (``native/src/authn/api_key.rs``), which
carries the subject written here (the native side derives none of its own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from bastion.storage.models import ApiKey, utcnow

__all__ = [
    "API_KEY_CLIENT_PREFIX",
    "api_key_client_id",
    "api_key_refusal",
    "api_key_status",
    "api_key_subject",
    "key_is_usable",
]

#: Prefix of the ``client_id`` claim of tokens obtained with an API key.
API_KEY_CLIENT_PREFIX: Final = "apikey:"

# The listing word of each refusal (a key whose rotation grace ended was "rotated").
_STATUS_OF_REFUSAL: Final = {
    "revoked": "revoked",
    "disabled": "disabled",
    "expired": "expired",
    "grace_ended": "rotated",
}


def api_key_refusal(key: ApiKey, now: float) -> str | None:
    """Why ``key`` may not be used at ``now`` (epoch seconds) by its state alone, or ``None``.

    The reasons, checked in this order: ``revoked``, ``disabled``, ``expired``
    (at or past ``expires_at``), ``grace_ended`` (at or past the end of its
    rotation grace). The secret, the format and the IP allow-list are the
    verifier's business, not the state's.
    """
    if key.revoked_at is not None:
        return "revoked"
    if key.disabled:
        return "disabled"
    if key.expires_at is not None and key.expires_at.timestamp() <= now:
        return "expired"
    if key.grace_until is not None and key.grace_until.timestamp() <= now:
        return "grace_ended"
    return None


def key_is_usable(key: ApiKey, now: float) -> bool:
    """Whether ``key`` may be used at ``now`` (epoch seconds): no :func:`api_key_refusal`."""
    return api_key_refusal(key, now) is None


def api_key_status(key: ApiKey, now: datetime | None = None) -> str:
    """One word for a key's state: ``revoked``, ``disabled``, ``expired``, ``rotated``
    (its grace period is over), ``grace`` (rotated, still valid) or ``active``."""
    refusal = api_key_refusal(key, (now or utcnow()).timestamp())
    if refusal is not None:
        return _STATUS_OF_REFUSAL[refusal]
    return "grace" if key.grace_until is not None else "active"


def api_key_client_id(key: ApiKey) -> str:
    """The ``client_id`` claim of tokens obtained with ``key``: ``apikey:<id>``."""
    return API_KEY_CLIENT_PREFIX + key.id


def api_key_subject(key: ApiKey) -> str:
    """The ``sub`` of tokens obtained with ``key``: its owner, else the key itself."""
    if key.owner_type and key.owner_id:
        return f"{key.owner_type}:{key.owner_id}"
    return api_key_client_id(key)
