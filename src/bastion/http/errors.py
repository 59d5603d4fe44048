"""Errors of the HTTP face: the package root, request routing errors, request body errors
and server start-up errors."""

from __future__ import annotations

from typing import Any

from bastion.errors import BastionError, ServiceUnavailableError

__all__ = [
    "EndpointMethodNotAllowedError",
    "EndpointNotFoundError",
    "GatewayUnavailableError",
    "HTTPError",
    "InvalidRequestError",
    "NotReadyError",
    "PayloadTooLargeError",
    "RequestBodyUnreadableError",
    "ServerStartError",
    "UnsupportedMediaTypeError",
    "UnsupportedScopeError",
]


class HTTPError(BastionError):
    """Root of every error raised by ``bastion.http``."""

    code = "http_error"
    status = 500
    title = "HTTP error"


class EndpointNotFoundError(HTTPError):
    """No bastion endpoint exists at this path (under a bastion-owned prefix)."""

    code = "not_found"
    status = 404
    title = "Not found"


class EndpointMethodNotAllowedError(HTTPError):
    """The endpoint exists but does not accept this method; ``allow`` lists the ones it does."""

    code = "method_not_allowed"
    status = 405
    title = "Method not allowed"

    def __init__(self, detail: str | None = None, *, allow: str = "") -> None:
        super().__init__(detail)
        # Rendered as the ``Allow`` response header (RFC 9110 section 15.5.6), not a body member.
        self.allow = allow


class NotReadyError(ServiceUnavailableError, HTTPError):
    """A readiness check failed: ``checks`` maps every check name to "ok" or its one-line reason."""

    code = "not_ready"
    status = 503
    title = "Not ready"


class GatewayUnavailableError(ServiceUnavailableError, HTTPError):
    """A gateway request reached the control plane (503, ``Retry-After: 1``).

    The native core decides every gateway request; one reaches Python only while the
    native core has no route table loaded yet (start-up), or through a deferral the
    native core should not have made. Either way nothing here may judge it: the client
    retries shortly.
    """

    code = "gateway_unavailable"
    status = 503
    title = "Gateway unavailable"
    retry_after = 1


class RequestBodyUnreadableError(HTTPError):
    """The request body could not be read to its end (400): a malformed chunked body, or
    the client went away while sending it."""

    code = "bad_request_body"
    status = 400
    title = "Bad request body"


class InvalidRequestError(HTTPError):
    """A request's JSON body (or a query parameter) is malformed (400); ``errors`` lists
    each field and its message."""

    code = "invalid_request"
    status = 400
    title = "Invalid request"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail, errors=errors or [])


class PayloadTooLargeError(HTTPError):
    """A request body is larger than the endpoint reads (413)."""

    code = "payload_too_large"
    status = 413
    title = "Payload too large"


class UnsupportedMediaTypeError(HTTPError):
    """A request body is not of the media type the endpoint reads (415)."""

    code = "unsupported_media_type"
    status = 415
    title = "Unsupported media type"


class UnsupportedScopeError(HTTPError):
    """The ASGI server sent a scope type bastion does not serve (only http, websocket, lifespan)."""

    code = "unsupported_scope"
    status = 500
    title = "Unsupported ASGI scope"


class ServerStartError(HTTPError):
    """The HTTP server could not start: address in use, permission denied, failed start-up, ..."""

    code = "server_start_failed"
    status = 500
    title = "Server start failed"
