"""bastion.http: the HTTP face — ASGI app assembly, pure-ASGI middleware, problem+json, server.

Public surface: :func:`create_app` (the ASGI app for a runtime), :func:`run_server` /
:func:`serve_forever` (the native front, with the app behind it, in this process),
:data:`RESERVED_PREFIXES` (paths bastion owns), the problem+json renderers and this
package's errors.
"""

from bastion.http.app import RESERVED_PREFIXES, RuntimeLike, create_app
from bastion.http.errors import (
    EndpointMethodNotAllowedError,
    EndpointNotFoundError,
    HTTPError,
    NotReadyError,
    ServerStartError,
    UnsupportedScopeError,
)
from bastion.http.problem import problem_response, send_problem
from bastion.http.server import run_server, serve_forever

__all__ = [
    "RESERVED_PREFIXES",
    "EndpointMethodNotAllowedError",
    "EndpointNotFoundError",
    "HTTPError",
    "NotReadyError",
    "RuntimeLike",
    "ServerStartError",
    "UnsupportedScopeError",
    "create_app",
    "problem_response",
    "run_server",
    "send_problem",
    "serve_forever",
]
