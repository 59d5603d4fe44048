"""``GET|HEAD /metrics`` — the Prometheus scrape endpoint (``bastion.observability.metrics``).

Where it is served (``metrics`` settings):

- ``enabled: false`` — nowhere (404 like any unknown bastion path);
- no ``listen`` (default) — on the main port, as one of bastion's own
  endpoints (the path is reserved: it never reaches the gateway);
- ``listen: {host, port}`` — ONLY on that separate plain-HTTP listener
  (:func:`metrics_listener_app`, started by ``bastion serve`` next to the main
  server); the main port answers 404.

Who may scrape — metrics reveal route names and traffic volumes, so:

- with ``token`` set, every scrape, on either listener, must send
  ``Authorization: Bearer <token>`` (compared in constant time), else 401
  ``metrics_unauthorized`` with a ``WWW-Authenticate: Bearer`` challenge;
- without a token, the main port answers only clients whose TCP peer is a
  loopback address and not a trusted proxy (so ``make demo`` users can
  ``curl -k https://127.0.0.1:8443/metrics``, while a request forwarded by a
  local reverse proxy is refused), everyone else gets 403 ``metrics_forbidden``;
  the separate listener answers anyone who can reach its address (default
  ``127.0.0.1``: binding it elsewhere is the operator's decision).

The body is the Prometheus text format (``text/plain; version=0.0.4``), or
OpenMetrics when the ``Accept`` header asks for it; never cached.
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.crypto.digests import constant_time_equals
from bastion.errors import BastionError
from bastion.gateway.forwarded import TrustedProxies
from bastion.http.errors import EndpointMethodNotAllowedError, EndpointNotFoundError
from bastion.http.middleware import ErrorMiddleware, RequestIdMiddleware, SecurityHeadersMiddleware
from bastion.http.runtime import ControlPlane, MetricsRenderer
from bastion.http.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "METRICS_PATH",
    "MetricsAccessError",
    "MetricsForbiddenError",
    "MetricsUnauthorizedError",
    "check_scrape",
    "metrics_listener_app",
    "metrics_routes",
]

METRICS_PATH = "/metrics"

_NO_STORE = {"cache-control": "no-store"}


class MetricsAccessError(BastionError):
    """A scrape of ``/metrics`` was refused."""

    code = "metrics_access_denied"
    status = 403
    title = "Forbidden"


class MetricsUnauthorizedError(MetricsAccessError):
    """The scrape lacks the configured bearer token, or sent a wrong one (401)."""

    code = "metrics_unauthorized"
    status = 401
    title = "Unauthorized"
    www_authenticate = 'Bearer realm="bastion-metrics"'


class MetricsForbiddenError(MetricsAccessError):
    """No token is configured and the client is not local: the main port refuses (403)."""

    code = "metrics_forbidden"
    status = 403
    title = "Forbidden"


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
            return b""
    return None


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_scrape(
    scope: Scope, runtime: ControlPlane, *, separate: bool, trusted: TrustedProxies
) -> None:
    """Return when the scrape in ``scope`` may read the metrics; raise otherwise.

    ``separate`` says the request came in on the metrics listener; ``trusted`` are
    the trusted proxies (built once, from ``trusted_proxies``). Raises
    :class:`MetricsUnauthorizedError` (token configured, missing or wrong) or
    :class:`MetricsForbiddenError` (no token, main port, client not loopback
    or a trusted proxy).
    """
    token = runtime.settings.metrics.token
    if token is not None:
        sent = _bearer(scope)
        if sent is None:
            raise MetricsUnauthorizedError(
                "Scraping needs the metrics token: send Authorization: Bearer <metrics.token>."
            )
        # Always compare, even an empty value: the answer's timing says nothing of the token.
        if not constant_time_equals(sent, token.get_secret_value()) or not sent:
            raise MetricsUnauthorizedError("The metrics token is not valid.")
        return
    if separate:
        return
    client = scope.get("client")
    peer = client[0] if client else None
    # A loopback peer that is a trusted proxy relays someone else's request.
    if not _is_loopback(peer) or peer in trusted:
        raise MetricsForbiddenError(
            "Metrics are served on this port only to local clients — set metrics.token to "
            "scrape from elsewhere, or metrics.listen for a listener of their own."
        )


def _response(metrics: MetricsRenderer, request: Request) -> Response:
    body, content_type = metrics.render(request.headers.get("accept", ""))
    return Response(body, headers=_NO_STORE, media_type=content_type)


def metrics_routes(runtime: ControlPlane) -> list[Route]:
    """The ``/metrics`` route for the main port (none when disabled or on its own listener)."""
    registry = runtime.metrics
    if registry is None:
        return []  # metrics.enabled is false (or a runtime built without metrics)
    settings = runtime.settings.metrics
    if not settings.enabled or settings.listen is not None:
        return []
    trusted = TrustedProxies(runtime.settings.trusted_proxies)

    async def metrics(request: Request) -> Response:
        check_scrape(request.scope, runtime, separate=False, trusted=trusted)
        return _response(registry, request)

    return [Route(METRICS_PATH, metrics, methods=["GET", "HEAD"], name="metrics")]


def metrics_listener_app(runtime: ControlPlane) -> ASGIApp:
    """The ASGI app of the separate metrics listener: ``/metrics`` and nothing else.

    Other paths are 404 ``not_found``, other methods 405; errors are
    problem+json with a request id, like on the main port.
    """
    trusted = TrustedProxies(runtime.settings.trusted_proxies)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets; lifespan is not used on this listener
        if scope["path"] != METRICS_PATH:
            raise EndpointNotFoundError(f"no bastion endpoint at {scope['path']!r}")
        if scope["method"] not in ("GET", "HEAD"):
            raise EndpointMethodNotAllowedError("allowed methods: GET, HEAD", allow="GET, HEAD")
        check_scrape(scope, runtime, separate=True, trusted=trusted)
        if runtime.metrics is None:
            raise EndpointNotFoundError(f"no bastion endpoint at {scope['path']!r}")
        response = _response(runtime.metrics, Request(scope, receive))
        await response(scope, receive, send)

    return RequestIdMiddleware(SecurityHeadersMiddleware(ErrorMiddleware(app)))
