"""bastion.apikeys: the API key lifecycle, leak response and hot-path verification.

What a valid key's metadata is lives in :mod:`bastion.apikeys.spec`, whether a
stored key is usable now (and whom it speaks for) in :mod:`bastion.apikeys.state`,
its JSON description in :mod:`bastion.apikeys.views`.

The key format itself (generation, checksum, digest) lives in
:mod:`bastion.crypto.apikeys`; the format is documented for secret-scanning
partners in ``docs/api-keys.md``.
"""

from bastion.apikeys.errors import (
    AmbiguousApiKeyError,
    ApiKeyError,
    ApiKeyInQueryError,
    ApiKeyIPNotAllowedError,
    ApiKeySpecError,
    ApiKeyStateError,
    InvalidApiKeyError,
)
from bastion.apikeys.service import API_KEYS_CHANNEL, ApiKeyService
from bastion.apikeys.spec import ApiKeySpec
from bastion.apikeys.state import api_key_status
from bastion.apikeys.views import api_key_view

__all__ = [
    "API_KEYS_CHANNEL",
    "AmbiguousApiKeyError",
    "ApiKeyError",
    "ApiKeyIPNotAllowedError",
    "ApiKeyInQueryError",
    "ApiKeyService",
    "ApiKeySpec",
    "ApiKeySpecError",
    "ApiKeyStateError",
    "InvalidApiKeyError",
    "api_key_status",
    "api_key_view",
]
