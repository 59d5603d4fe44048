"""The forward-auth decision endpoint: ``/auth/verify`` for nginx, Caddy and Traefik.

A reverse proxy that is not bastion asks, for each client request, whether to
let it through: nginx ``auth_request``, Caddy ``forward_auth``, Traefik
``forwardAuth``. bastion judges the *original* request against its routes
with the gateway's own steps — ``framing`` → ``match`` → ``ip`` →
``authenticate`` → ``authorize`` → ``limit`` (no ``cors``: the proxy or the
application answers CORS; no ``body``: the proxy does not send it; no
``mutate`` or ``proxy``) — and answers:

- **200** with bastion's identity headers (``X-Bastion-Subject``,
  ``X-Bastion-Client``, ``X-Bastion-Scopes``, ``X-Bastion-Key-Id``,
  ``X-Bastion-Request-Id``) and the ``RateLimit`` headers, for the proxy to
  copy onto the upstream request (nginx ``auth_request_set``, Caddy
  ``copy_headers``, Traefik ``authResponseHeaders``);
- the denial otherwise, as problem+json: 401 with ``WWW-Authenticate``, 403,
  404/405 for no route, 429 with ``Retry-After``.

The original request is read from ``X-Original-Method`` / ``X-Original-URI``
(nginx convention, set in ``examples/nginx/forward-auth.conf``) or
``X-Forwarded-Method`` / ``X-Forwarded-Uri`` (Traefik, Caddy), its host from
``X-Forwarded-Host`` (else ``Host``), the client address from
``X-Forwarded-For``. The credentials are the request's own headers (the
proxies forward the client's headers to the auth request).

These headers decide everything, so they are believed only from a direct peer
in ``trusted_proxies``: any other caller gets 403 ``forward_auth_untrusted``
(a client that could name its own method and URI could ask about any route).
A trusted caller that omits or garbles them gets 400 ``forward_auth_bad_request``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.routing import Route

from bastion.gateway.errors import BadRequestError, GatewayError
from bastion.gateway.pipeline import Exchange, Gateway
from bastion.gateway.proxy import apply_edits
from bastion.http.errors import EndpointNotFoundError
from bastion.http.middleware.request_id import SCOPE_KEY
from bastion.http.types import Receive, Scope, Send

__all__ = [
    "FORWARD_AUTH_PATH",
    "ForwardAuthBadRequestError",
    "ForwardAuthEndpoint",
    "ForwardAuthUntrustedError",
    "forward_auth_routes",
]

FORWARD_AUTH_PATH = "/auth/verify"

# The gateway steps a decision runs, in table order, up to (not including) "mutate".
_SKIPPED = frozenset({"cors", "body"})
_LAST = "mutate"

_METHOD_HEADERS = (b"x-original-method", b"x-forwarded-method")
_URI_HEADERS = (b"x-original-uri", b"x-forwarded-uri")
_META = frozenset(
    {b"x-original-method", b"x-original-uri", b"x-forwarded-method", b"x-forwarded-uri"}
)
_TOKEN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MAX_URI = 8192


class ForwardAuthUntrustedError(GatewayError):
    """The caller of the decision endpoint is not a trusted proxy (403)."""

    code = "forward_auth_untrusted"
    status = 403
    title = "Forbidden"


class ForwardAuthBadRequestError(BadRequestError):
    """The trusted proxy did not say which request to judge, or said it unreadably (400)."""

    code = "forward_auth_bad_request"
    status = 400
    title = "Bad forward-auth request"


def _first(headers: list[tuple[bytes, bytes]], names: tuple[bytes, ...]) -> bytes | None:
    for wanted in names:
        for name, value in headers:
            if name.lower() == wanted:
                return value.strip()
    return None


def original_scope(scope: Scope) -> Scope:
    """The ASGI scope of the request the proxy asks about (a shallow copy of ``scope``).

    Raises :class:`ForwardAuthBadRequestError` when the method or URI is missing or invalid.
    """
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
    method = _first(headers, _METHOD_HEADERS)
    uri = _first(headers, _URI_HEADERS)
    if not method or not uri:
        raise ForwardAuthBadRequestError(
            "Say which request to judge: send X-Original-Method and X-Original-URI "
            "(or X-Forwarded-Method and X-Forwarded-Uri)."
        )
    if len(method) > 16 or not set(method) <= _TOKEN:
        raise ForwardAuthBadRequestError("The original method is not an upper-case HTTP method.")
    if len(uri) > _MAX_URI or not uri.startswith(b"/") or any(c <= 32 or c == 127 for c in uri):
        raise ForwardAuthBadRequestError("The original URI is not an origin-form path.")
    raw_path, _, query = uri.partition(b"?")
    raw_path = raw_path.partition(b"#")[0]
    forwarded_host = _first(headers, (b"x-forwarded-host",))
    kept = [(n, v) for n, v in headers if n.lower() not in _META and n.lower() != b"host"]
    host = forwarded_host or _first(headers, (b"host",)) or b""
    if host:
        kept.append((b"host", host))
    return {
        **scope,
        "method": method.decode("ascii"),
        "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": kept,
    }


class ForwardAuthEndpoint:
    """The ASGI endpoint at :data:`FORWARD_AUTH_PATH` (any method).

    Raises :class:`ForwardAuthUntrustedError` (403), :class:`ForwardAuthBadRequestError`
    (400) or the denying gateway step's error; they render as problem+json.
    """

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = getattr(self.runtime, "gateway", None)
        if not isinstance(gateway, Gateway) or scope["type"] != "http":
            raise EndpointNotFoundError("no forward-auth endpoint here")
        client = scope.get("client")
        peer = client[0] if client else None
        if not gateway.trusted_proxies or peer not in gateway.trusted_proxies:
            raise ForwardAuthUntrustedError(
                "Only a proxy listed in trusted_proxies may ask for forward-auth decisions."
            )
        ex = Exchange(gateway, original_scope(scope), receive, send)
        for step in gateway.steps:
            if step.name == _LAST:
                break
            if step.name in _SKIPPED:
                continue
            # Deliberate denials propagate and render themselves; a broken step fails
            # closed (a 500 nginx turns into a refusal), never into a 200.
            await step.run(ex)
        request_id = scope.get(SCOPE_KEY)
        headers = gateway.identity_headers.rewrite((), ex.identity, request_id)
        headers += [(b"cache-control", b"no-store"), (b"content-length", b"0")]
        headers = apply_edits(headers, ex.response_edits)  # the rate-limit state
        await ex.send({"type": "http.response.start", "status": 200, "headers": headers})
        await ex.send({"type": "http.response.body", "body": b""})


def forward_auth_routes(runtime: Any) -> list[Route]:
    """The forward-auth decision route (every method: proxies use GET, HEAD or the original)."""
    return [Route(FORWARD_AUTH_PATH, ForwardAuthEndpoint(runtime))]
