"""RFC 9457 problem details: how every bastion error becomes an HTTP response.

Every error response bastion itself produces is ``application/problem+json``
with the members ``type``, ``title``, ``status``, ``detail``, ``reason`` (the
stable machine code) and ``request_id``, plus the error's own ``extra``
members. Error responses are never cached (``Cache-Control: no-store``).

Response headers an error asks for are read from optional attributes, so any
``BastionError`` subclass can carry them without this module knowing it:

- ``www_authenticate: str | None`` → ``WWW-Authenticate`` (RFC 6750 challenges)
- ``retry_after: int | float | None`` → ``Retry-After`` in whole seconds
  (every ``ServiceUnavailableError`` defaults to 1 second)
- ``allow: str | None`` → ``Allow`` (405 responses)

https://www.rfc-editor.org/rfc/rfc9457
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import orjson

from bastion.errors import BastionError, ServiceUnavailableError
from bastion.http.types import Send

__all__ = ["PROBLEM_CONTENT_TYPE", "Header", "problem_response", "send_problem"]

PROBLEM_CONTENT_TYPE = b"application/problem+json"

Header = tuple[bytes, bytes]

_BASE_HEADERS: tuple[Header, ...] = (
    (b"content-type", PROBLEM_CONTENT_TYPE),
    (b"cache-control", b"no-store"),
)


def _header_value(value: object) -> bytes:
    # Header values must never carry CR/LF: a detail copied into a challenge
    # must not be able to split the response.
    text = str(value).replace("\r", " ").replace("\n", " ")
    return text.encode("latin-1", "replace")


def _retry_after(error: BastionError) -> int | None:
    value = getattr(error, "retry_after", None)
    if value is None:
        return 1 if isinstance(error, ServiceUnavailableError) else None
    return max(0, math.ceil(float(value)))


def problem_document(error: BastionError, request_id: str) -> dict[str, Any]:
    """The problem+json members of ``error`` for the request ``request_id``."""
    document = error.to_problem()
    document["request_id"] = request_id
    return document


def problem_response(error: BastionError, request_id: str) -> tuple[int, list[Header], bytes]:
    """Render ``error`` as ``(status, headers, body)`` of an RFC 9457 response.

    Never raises for a well-formed ``BastionError``: ``extra`` members that
    are not JSON-serialisable are rendered with ``str()``.
    """
    body = orjson.dumps(problem_document(error, request_id), default=str)
    headers = list(_BASE_HEADERS)
    headers.append((b"content-length", str(len(body)).encode()))
    challenge = getattr(error, "www_authenticate", None)
    if challenge:
        headers.append((b"www-authenticate", _header_value(challenge)))
    retry_after = _retry_after(error)
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    allow = getattr(error, "allow", None)
    if allow:
        headers.append((b"allow", _header_value(allow)))
    # Any further response headers the error carries as (name, value) pairs (e.g.
    # RateLimit on a 429). Only a list or tuple counts: OAuthError.headers is a method.
    extra = getattr(error, "headers", None)
    if isinstance(extra, list | tuple):
        for name, value in extra:
            headers.append((str(name).lower().encode("latin-1"), _header_value(value)))
    return error.status, headers, body


async def send_problem(
    send: Send,
    error: BastionError,
    request_id: str,
    extra_headers: Iterable[Header] = (),
) -> None:
    """Send ``error`` as a complete problem+json response on a raw ASGI ``send``.

    Raises whatever ``send`` raises (for example when the client is gone).
    """
    status, headers, body = problem_response(error, request_id)
    headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
