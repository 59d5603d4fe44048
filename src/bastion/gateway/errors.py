"""Errors of the gateway data plane.

Every error here (except :class:`UpstreamAbortedError`) is raised *before* any
response byte is sent to the client; the HTTP layer's error middleware renders
it as RFC 9457 problem+json, adding the response headers in :attr:`GatewayError.headers`
(``Allow`` for 405, ``WWW-Authenticate`` for 401).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bastion.errors import BastionError

__all__ = [
    "UPSTREAM_CAUSES",
    "BadRequestError",
    "BadRequestFramingError",
    "BadRequestHostError",
    "BadRequestMethodError",
    "BadRequestPathError",
    "BodyTooLargeError",
    "GatewayConfigError",
    "GatewayError",
    "HeadersTooLargeError",
    "MethodNotAllowedError",
    "NoHealthyUpstreamError",
    "RequestTooLargeError",
    "RouteNotFoundError",
    "UnauthenticatedError",
    "UpstreamAbortedError",
    "UpstreamFailureError",
    "UpstreamTLSError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class GatewayError(BastionError):
    """Root of every gateway error."""

    code = "gateway_error"
    status = 500
    title = "Gateway error"


class GatewayConfigError(GatewayError):
    """A route cannot be compiled (bad path prefix, bad upstream URL, duplicate route).

    Raised at start-up by the matcher, never per request.
    """

    code = "gateway_config_invalid"
    status = 500
    title = "Invalid gateway configuration"


class RouteNotFoundError(GatewayError):
    """No route matches the request's host and path; the request is never proxied."""

    code = "route_not_found"
    status = 404
    title = "Not found"


class MethodNotAllowedError(GatewayError):
    """A route matches the path but does not accept the request method.

    ``allowed`` holds the accepted methods (sorted); ``allow`` is the value of
    the ``Allow`` response header; the problem document lists them as ``allow``.
    """

    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"

    def __init__(self, detail: str | None = None, *, allow: Iterable[str], **extra: Any) -> None:
        self.allowed: tuple[str, ...] = tuple(sorted(set(allow)))
        self.allow = ", ".join(self.allowed)
        super().__init__(detail, allow=list(self.allowed), **extra)


class BadRequestError(GatewayError):
    """The request is malformed (e.g. conflicting or invalid body framing headers)."""

    code = "bad_request"
    status = 400
    title = "Bad request"


class BadRequestPathError(BadRequestError):
    """The request path cannot be normalised safely (encoded slash, NUL, escapes root …)."""

    code = "invalid_path"
    status = 400
    title = "Invalid request path"


class UnauthenticatedError(GatewayError):
    """No accepted authentication method vouched for the request (fail closed)."""

    code = "unauthenticated"
    status = 401
    title = "Unauthenticated"
    www_authenticate = 'Bearer realm="bastion"'


class RequestTooLargeError(GatewayError):
    """The request body is larger than the gateway accepts."""

    code = "request_too_large"
    status = 413
    title = "Request body too large"


class UpstreamFailureError(GatewayError):
    """Root of the failures to get an answer from an upstream (a network failure, not a bug).

    ``cause`` says what happened, for the log and the metrics (one of
    :data:`UPSTREAM_CAUSES`); ``target`` is the upstream as ``scheme://host:port``;
    ``note`` is the operating system's or TLS library's own words. None of the three
    is sent to the client. The proxy step logs one line per failure (rate-limited
    per target); the HTTP layer renders it without a traceback.
    """

    code = "upstream_unavailable"
    status = 502
    title = "Upstream unavailable"
    log_traceback = False

    def __init__(
        self, detail: str | None = None, *, cause: str = "", target: str = "", note: str = ""
    ) -> None:
        super().__init__(detail)
        self.cause = cause
        self.target = target
        self.note = note


#: What an UpstreamFailureError's ``cause`` may say (docs/gateway-upstreams.md).
UPSTREAM_CAUSES = (
    "refused",  # nothing listens on the port (connection refused)
    "dns",  # the host name does not resolve
    "unreachable",  # no route to the host / network, or another socket error
    "timeout",  # connecting or waiting for the response took too long (504)
    "tls",  # TLS handshake failed: certificate not trusted, wrong name, protocol
    "reset",  # the upstream reset the connection
    "closed",  # the upstream closed the connection before (or while) answering
    "invalid_response",  # the upstream's answer is not valid HTTP/1.1
    "no_healthy_target",  # every target is ejected by the health checks (503)
)


class UpstreamUnavailableError(UpstreamFailureError):
    """The upstream refused the connection, reset it, or sent an invalid response."""

    code = "upstream_unavailable"
    status = 502
    title = "Upstream unavailable"


class UpstreamTLSError(UpstreamUnavailableError):
    """The TLS handshake with an https upstream failed (certificate not trusted, wrong name …)."""

    code = "upstream_tls_error"
    status = 502
    title = "Upstream TLS error"


class NoHealthyUpstreamError(UpstreamUnavailableError):
    """Every target of the route is ejected by the passive health checks; nothing was tried.

    ``retry_after`` is the number of seconds until a target may be probed again.
    """

    code = "upstream_unavailable"
    status = 503
    title = "Upstream unavailable"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        super().__init__(detail, cause="no_healthy_target")


class UpstreamTimeoutError(UpstreamFailureError):
    """The upstream did not connect or answer within the route's timeouts."""

    code = "upstream_timeout"
    status = 504
    title = "Upstream timeout"


class UpstreamAbortedError(UpstreamFailureError):
    """The upstream failed after the response had started; the client connection must be aborted.

    Unlike every other gateway error this one is raised *after* response bytes
    were sent, so it cannot be rendered: the server closes the connection,
    and the client sees a truncated response rather than a forged complete one.
    """

    code = "upstream_aborted"
    status = 502
    title = "Upstream aborted"


class BadRequestMethodError(BadRequestError):
    """The request method is not an upper-case HTTP token (400)."""

    code = "invalid_method"
    status = 400
    title = "Invalid request method"


class BadRequestHostError(BadRequestError):
    """The request has several Host header fields, or none in HTTP/1.1 (400)."""

    code = "invalid_host"
    status = 400
    title = "Invalid Host header"


class BadRequestFramingError(BadRequestError):
    """The body framing headers conflict or are malformed (400)."""

    code = "bad_request_framing"
    status = 400
    title = "Bad request framing"


class BodyTooLargeError(RequestTooLargeError):
    """The request body is larger than the route's ``max_body`` (413)."""

    code = "body_too_large"
    status = 413
    title = "Request body too large"


class HeadersTooLargeError(GatewayError):
    """The request has too many header fields or too many header bytes (431)."""

    code = "headers_too_large"
    status = 431
    title = "Request header fields too large"
