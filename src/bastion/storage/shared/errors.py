"""Errors of the shared ephemeral state (in-process or Redis).

An unreachable Redis is :class:`bastion.storage.errors.SharedStateUnavailableError`
(503); the two classes here are for a bad configuration and for a misuse of a key.
"""

from __future__ import annotations

from bastion.storage.errors import StorageError


class SharedStateConfigError(StorageError):
    """The shared state URL cannot be used (unknown scheme, malformed URL).

    Raised at start-up by :func:`bastion.storage.shared.open_shared_state`; the
    detail names the (redacted) URL and the schemes that are accepted.
    """

    code = "shared_state_config"
    status = 500
    title = "Shared state misconfigured"


class SharedStateValueError(StorageError):
    """An operation does not fit the value stored under a key.

    For example ``incr`` on a key that holds something other than a 64-bit
    integer, or an increment that would overflow it. This is a bug in the caller,
    not an outage, so it is not a 503.
    """

    code = "shared_state_value"
    status = 500
    title = "Shared state value error"
