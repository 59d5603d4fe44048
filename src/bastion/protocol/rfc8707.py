"""Resource Indicators for OAuth 2.0 — RFC 8707 §2 (https://www.rfc-editor.org/rfc/rfc8707#section-2).

A client names the protected resource it wants a token for with ``resource``:
an absolute URI without a fragment. bastion issues a token for at most one
resource per request (its ``aud``), and only for a resource the client is
allowed (its registered audiences); anything else is ``invalid_target``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from urllib.parse import urlsplit

from bastion.protocol.rfc6749.errors import InvalidTargetError

__all__ = ["MAX_RESOURCE_LENGTH", "check_resource", "requested_resource"]

#: Longest resource URI accepted.
MAX_RESOURCE_LENGTH = 2048


def check_resource(resource: str) -> str:
    """Return ``resource`` if it is an absolute URI without a fragment (RFC 8707 §2).

    Raises:
        InvalidTargetError: not an absolute URI, has a fragment, or is too long.
    """
    if len(resource) > MAX_RESOURCE_LENGTH:
        raise InvalidTargetError(f"resource is longer than {MAX_RESOURCE_LENGTH} characters")
    # RFC 3986 URIs are printable ASCII without spaces.
    if not resource.isascii() or any(ch.isspace() or not ch.isprintable() for ch in resource):
        raise InvalidTargetError("resource must be an absolute URI without a fragment")
    try:
        parts = urlsplit(resource)
    except ValueError:
        raise InvalidTargetError("resource must be an absolute URI without a fragment") from None
    if not parts.scheme or not (parts.netloc or parts.path) or "#" in resource:
        raise InvalidTargetError("resource must be an absolute URI without a fragment")
    return resource


def requested_resource(values: Sequence[str], allowed: Collection[str]) -> str | None:
    """The one resource requested (``None`` when absent), checked against ``allowed``.

    ``values`` are every ``resource`` parameter of the request; ``allowed`` the
    client's registered audiences (exact string match).

    Raises:
        InvalidTargetError: more than one resource, a malformed one, or one the
            client may not request a token for.
    """
    if not values:
        return None
    if len(values) > 1:
        raise InvalidTargetError(
            "only one resource parameter per request is supported; request one token per resource"
        )
    resource = check_resource(values[0])
    if resource not in allowed:
        raise InvalidTargetError(f"resource '{resource}' is not allowed for this client")
    return resource
