"""Pure ASGI middleware (no ``BaseHTTPMiddleware``): request id, security headers, error rendering.

The stack, outermost first, is assembled in :func:`bastion.http.app.create_app`:
request id → security headers → errors → dispatch. Each layer precomputes what
it can at construction so a request costs one small closure and a header scan.
``http`` requests get the same three in one layer (:mod:`.combined`), whose single
``send`` wrapper is what every proxied response pays for.
"""

from bastion.http.middleware.errors import ErrorMiddleware
from bastion.http.middleware.request_id import (
    REQUEST_ID_HEADER,
    RequestIdMiddleware,
    get_request_id,
)
from bastion.http.middleware.security_headers import SecurityHeadersMiddleware

__all__ = [
    "REQUEST_ID_HEADER",
    "ErrorMiddleware",
    "RequestIdMiddleware",
    "SecurityHeadersMiddleware",
    "get_request_id",
]
