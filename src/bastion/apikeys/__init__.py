"""bastion.apikeys: the API key lifecycle, leak response and hot-path verification.

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
from bastion.apikeys.service import (
    API_KEYS_CHANNEL,
    ApiKeyService,
    ApiKeySpec,
    api_key_status,
    api_key_view,
)

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
