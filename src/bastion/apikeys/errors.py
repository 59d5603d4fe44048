"""Errors of the API key service.

Every refusal of a presented key is one :class:`InvalidApiKeyError` with one
detail ("the API key is not valid"), so a caller cannot tell an unknown key
from a revoked one; the precise ``reason`` goes to the audit log only. No
message ever contains a key.
"""

from __future__ import annotations

from typing import Final

from bastion.credentials.validation import SpecError
from bastion.errors import BastionError

__all__ = [
    "INVALID_API_KEY_DETAIL",
    "AmbiguousApiKeyError",
    "ApiKeyError",
    "ApiKeyIPNotAllowedError",
    "ApiKeyInQueryError",
    "ApiKeySpecError",
    "ApiKeyStateError",
    "InvalidApiKeyError",
]

INVALID_API_KEY_DETAIL: Final = "the API key is not valid"


class ApiKeyError(BastionError):
    """Root of the API key service's errors."""

    code = "api_key_error"
    status = 500
    title = "API key error"


class InvalidApiKeyError(ApiKeyError):
    """A presented API key was refused (401, RFC 6750 ``invalid_token`` challenge).

    ``reason`` (audit only): ``malformed``, ``bad_checksum``, ``unknown``,
    ``expired``, ``revoked``, ``disabled``, ``grace_ended``.
    """

    code = "invalid_api_key"
    status = 401
    title = "Invalid API key"
    www_authenticate = 'Bearer realm="bastion", error="invalid_token"'

    def __init__(self, reason: str) -> None:
        # reason is deliberately not a problem member: the outside sees one answer.
        super().__init__(INVALID_API_KEY_DETAIL)
        self.reason = reason


class ApiKeyInQueryError(ApiKeyError):
    """Something shaped like an API key is in the query string (400, RFC 6750 ``invalid_request``).

    Refused before any key is looked up, valid or not (the answer says nothing
    about the key), so the client learns the fix: keys go in a header. The
    detail never contains the key.
    """

    code = "api_key_in_query"
    status = 400
    title = "API key in the query string"
    www_authenticate = 'Bearer realm="bastion", error="invalid_request"'

    def __init__(self) -> None:
        super().__init__(
            "API keys are accepted only in request headers (Authorization: Bearer, or the "
            "route's API key header), never in the query string: URLs end up in logs, "
            "browser history and Referer headers. Revoke or rotate a key that was sent there."
        )
        self.reason = "in_query_string"


class ApiKeyIPNotAllowedError(ApiKeyError):
    """The key is valid but its IP allow-list does not include the client's address (403)."""

    code = "api_key_ip_not_allowed"
    status = 403
    title = "API key not allowed from this address"

    def __init__(self) -> None:
        super().__init__("the API key may not be used from this address")
        self.reason = "ip_not_allowed"


class ApiKeySpecError(ApiKeyError, SpecError):
    """Key metadata is invalid; ``field`` names the member, the detail says the fix (400)."""

    code = "invalid_api_key_metadata"
    status = 400
    title = "Invalid API key metadata"


class AmbiguousApiKeyError(ApiKeyError):
    """A display prefix names more than one key (409): the key's id tells them apart."""

    code = "ambiguous_api_key"
    status = 409
    title = "Ambiguous API key prefix"


class ApiKeyStateError(ApiKeyError):
    """The operation does not apply to the key in its current state (409), e.g. rotating a
    revoked key."""

    code = "api_key_state_conflict"
    status = 409
    title = "API key state conflict"
