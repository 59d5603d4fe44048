"""Request hygiene: method, Host, body framing, header and body size limits, method overrides.

Two steps of the pipeline:

``framing`` (first, before ``match``) checks what the HTTP server let through:

- a method that is not an upper-case token (RFC 9110 §9.1: methods are
  case-sensitive; ``delete`` is not ``DELETE``, but an upstream framework may
  treat it as one after bastion judged it as something else) -> 400
  ``invalid_method``;
- several ``Host`` header fields, or none (or an empty one) in an HTTP/1.1
  request -> 400 ``invalid_host`` (RFC 9112 §3.2: the route would be matched
  on one and the upstream could read another). granian and uvicorn both pass
  them through (granian stands in ``Host: ""`` for a missing one);
- more header fields than ``request_limits.max_headers``, or more header bytes
  (names + values) than ``request_limits.max_header_bytes`` -> 431
  ``headers_too_large``. granian refuses more than 100 fields itself (a bare
  431) but passes any header size; uvicorn (httptools) limits neither;
- both ``Content-Length`` and ``Transfer-Encoding``, several or malformed
  ``Content-Length`` values, or a transfer coding other than ``chunked`` ->
  400 ``bad_request_framing``. Both engines already refuse most of these before
  the app sees them (uvicorn answers a bare 400; granian drops
  ``Content-Length`` when ``Transfer-Encoding: chunked`` is present and
  closes the connection after the response, RFC 9112 §6.3): this check is the
  defence in depth for whatever server runs bastion;
- ``X-HTTP-Method-Override`` (and ``X-HTTP-Method``, ``X-Method-Override``)
  never change the method bastion judges, and are removed before proxying:
  an upstream framework honouring them would run a method other than the one
  bastion authorised.

``body`` (after ``match``, before authentication) enforces the route's
``max_body`` (default ``request_limits.max_body``): a declared
``Content-Length`` over it is refused at once with 413 ``body_too_large``,
before anything is read or proxied; a chunked body is counted as it streams
and refused the moment it grows past the limit — the upstream connection is
then closed (never reused) and the client gets the 413.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.gateway.errors import (
    BadRequestFramingError,
    BadRequestHostError,
    BadRequestMethodError,
    BodyTooLargeError,
    HeadersTooLargeError,
)
from bastion.gateway.matcher import check_method

if TYPE_CHECKING:
    from bastion.gateway.pipeline import Exchange
    from bastion.gateway.proxy import Receive

__all__ = [
    "METHOD_OVERRIDE_HEADERS",
    "BadRequestFramingError",
    "BadRequestHostError",
    "BadRequestMethodError",
    "BodyTooLargeError",
    "HeadersTooLargeError",
    "body",
    "check_method",
    "framing",
]

METHOD_OVERRIDE_HEADERS = frozenset(
    {b"x-http-method-override", b"x-http-method", b"x-method-override"}
)
_DIGITS = frozenset(b"0123456789")
# The names "framing" looks at.
_WATCHED = METHOD_OVERRIDE_HEADERS | {b"content-length", b"transfer-encoding", b"host"}


async def framing(ex: Exchange) -> None:
    """Check the method, Host, header limits and body framing; drop method-override headers.

    Raises :class:`BadRequestMethodError`, :class:`BadRequestHostError`,
    :class:`BadRequestFramingError` (400) or :class:`HeadersTooLargeError` (431).
    """
    check_method(ex.method)
    edge = ex.gateway.edge
    scope = ex.scope
    headers = scope.get("headers") or ()
    if len(headers) > edge.max_headers:
        raise HeadersTooLargeError(
            f"The request has more than {edge.max_headers} header fields.",
        )
    size = 0
    lengths: list[bytes] = []
    codings: list[bytes] = []
    override = False
    hosts = 0
    host = b""
    for name, value in headers:
        size += len(name) + len(value)
        # Servers send lower-case names; others are lower-cased only then (hot path).
        if name in _WATCHED or (not name.islower() and name.lower() in _WATCHED):
            lower = name.lower()
            if lower == b"content-length":
                lengths.append(value)
            elif lower == b"transfer-encoding":
                codings.append(value)
            elif lower == b"host":
                hosts += 1
                host = value
            else:
                override = True
    if size > edge.max_header_bytes:
        raise HeadersTooLargeError(
            f"The request headers are larger than {edge.max_header_bytes} bytes."
        )
    if hosts != 1 or not host:
        if hosts > 1:
            raise BadRequestHostError("The request has more than one Host header; send one.")
        # granian stands in an empty Host for a missing one: the same refusal.
        if str(scope.get("http_version", "1.1")) == "1.1":
            raise BadRequestHostError("An HTTP/1.1 request must carry a Host header.")
    if codings:
        if lengths:
            raise BadRequestFramingError(
                "The request has both Content-Length and Transfer-Encoding; send only one."
            )
        tokens = [c.strip().lower() for v in codings for c in v.split(b",")]
        if tokens != [b"chunked"]:
            raise BadRequestFramingError("Transfer-Encoding must be exactly 'chunked'.")
        ex.body_length = -1
    elif lengths:
        raw = lengths[0].strip()
        if len(lengths) > 1 or not raw or len(raw) > 18 or not set(raw) <= _DIGITS:
            raise BadRequestFramingError("The request's Content-Length header is malformed.")
        ex.body_length = int(raw)
    elif str(scope.get("http_version", "1.1")).startswith("1"):
        ex.body_length = 0  # HTTP/1.x: no Content-Length, no Transfer-Encoding, no body
    else:
        ex.body_length = -1  # HTTP/2 and later may stream a body without Content-Length
    if override:
        kept = [h for h in headers if h[0].lower() not in METHOD_OVERRIDE_HEADERS]
        ex.scope = {**scope, "headers": kept}


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counting_receive() -> Any:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLargeError(f"The request body is larger than {limit} bytes.")
        return message

    return counting_receive


async def body(ex: Exchange) -> None:
    """Enforce the route's body size limit; raises :class:`BodyTooLargeError` (413)."""
    route = ex.route
    assert route is not None
    edge = ex.gateway.edge
    limit = edge.max_body.get(route.name, edge.default_max_body)
    declared = ex.body_length
    if declared > limit:
        raise BodyTooLargeError(f"The request body is larger than {limit} bytes.")
    if declared < 0:
        # Length unknown until the body has streamed: count it as it arrives. A declared
        # length is held to by the server and the proxy, so it needs no counting.
        ex.receive = _counting(ex.receive, limit)
