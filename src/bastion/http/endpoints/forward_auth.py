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

The original request's method and URI are read from ONE header family, named
by ``forward_auth.headers``:

- ``nginx`` (the default): ``X-Original-Method`` / ``X-Original-URI``, as set by
  ``examples/nginx/forward-auth.conf``;
- ``forwarded``: ``X-Forwarded-Method`` / ``X-Forwarded-Uri`` (Caddy
  ``forward_auth``, Traefik ``forwardAuth``).

The proxies forward the client's own headers to the auth request (that is how
the credential arrives), and each sets only its own family: the other family
is whatever the client sent. A decision request that carries any header of the
other family, or any of the headers it is judged by more than once
(method, URI, ``X-Forwarded-Host``, ``Host``), is refused with 400
``forward_auth_ambiguous`` — never judged on a guess. The host is
``X-Forwarded-Host`` (else ``Host``), the client address ``X-Forwarded-For``.

These headers decide everything, so they are believed only from a direct peer
in ``trusted_proxies``: any other caller gets 403 ``forward_auth_untrusted``
(a client that could name its own method and URI could ask about any route).
A trusted caller that omits or garbles them gets 400 ``forward_auth_bad_request``.

Every decision — the refusals above included — runs through the gateway's one
runner (:meth:`~bastion.gateway.pipeline.Gateway.decide`): it is audited
(``gateway.denied`` with ``data.door = "forward_auth"``), counted in the
gateway metrics and traced exactly like a request bastion proxies itself.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.routing import Route

from bastion.gateway.errors import BadRequestError, GatewayError
from bastion.gateway.pipeline import Exchange, Gateway, Step
from bastion.gateway.proxy import apply_edits
from bastion.http.errors import EndpointNotFoundError
from bastion.http.middleware.request_id import SCOPE_KEY
from bastion.http.types import Receive, Scope, Send
from bastion.settings import Settings

__all__ = [
    "FAMILIES",
    "FORWARD_AUTH_PATH",
    "ForwardAuthAmbiguousError",
    "ForwardAuthBadRequestError",
    "ForwardAuthEndpoint",
    "ForwardAuthUntrustedError",
    "forward_auth_routes",
]

FORWARD_AUTH_PATH = "/auth/verify"

# header family -> (its method header, its URI header)
FAMILIES: dict[str, tuple[bytes, bytes]] = {
    "nginx": (b"x-original-method", b"x-original-uri"),
    "forwarded": (b"x-forwarded-method", b"x-forwarded-uri"),
}
_SPELLED = {
    b"x-original-method": "X-Original-Method",
    b"x-original-uri": "X-Original-URI",
    b"x-forwarded-method": "X-Forwarded-Method",
    b"x-forwarded-uri": "X-Forwarded-Uri",
}
_META = frozenset(_SPELLED)
# Judged by: each at most once.
_SINGLE = _META | {b"x-forwarded-host", b"host"}
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


class ForwardAuthAmbiguousError(BadRequestError):
    """The decision request carries the other header family, or a judged header twice (400)."""

    code = "forward_auth_ambiguous"
    status = 400
    title = "Ambiguous forward-auth request"


def _judged_headers(headers: list[tuple[bytes, bytes]], family: str) -> dict[bytes, bytes]:
    """The headers a decision is judged by, each once; refuses the other family and repeats."""
    own = FAMILIES[family]
    found: dict[bytes, bytes] = {}
    for raw, value in headers:
        name = raw.lower()
        if name not in _SINGLE:
            continue
        if name in _META and name not in own:
            method, uri = (_SPELLED[n] for n in own)
            raise ForwardAuthAmbiguousError(
                f"The request carries {_SPELLED[name]}, but forward_auth.headers is {family}: "
                f"bastion reads the original request only from {method} and {uri}, and refuses "
                "a request that carries the other family too (a client may have sent it). "
                "Set forward_auth.headers to match your proxy (nginx: nginx; Caddy, Traefik: "
                "forwarded)."
            )
        if name in found:
            raise ForwardAuthAmbiguousError(
                f"The request carries more than one {name.decode('ascii').title()} header."
            )
        found[name] = value.strip()
    return found


def original_scope(scope: Scope, family: str = "nginx") -> Scope:
    """The ASGI scope of the request the proxy asks about (a shallow copy of ``scope``).

    ``family`` is ``forward_auth.headers`` (a key of :data:`FAMILIES`). Raises
    :class:`ForwardAuthAmbiguousError` for the other family or a repeated header,
    :class:`ForwardAuthBadRequestError` when the method or URI is missing or invalid.
    """
    headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or ())
    judged = _judged_headers(headers, family)
    method_header, uri_header = FAMILIES[family]
    method = judged.get(method_header)
    uri = judged.get(uri_header)
    if not method or not uri:
        raise ForwardAuthBadRequestError(
            f"Say which request to judge: send {_SPELLED[method_header]} and "
            f"{_SPELLED[uri_header]} (forward_auth.headers is {family})."
        )
    if len(method) > 16 or not set(method) <= _TOKEN:
        raise ForwardAuthBadRequestError("The original method is not an upper-case HTTP method.")
    if len(uri) > _MAX_URI or not uri.startswith(b"/") or any(c <= 32 or c == 127 for c in uri):
        raise ForwardAuthBadRequestError("The original URI is not an origin-form path.")
    raw_path, _, query = uri.partition(b"?")
    raw_path = raw_path.partition(b"#")[0]
    kept = [(n, v) for n, v in headers if n.lower() not in _META and n.lower() != b"host"]
    host = judged.get(b"x-forwarded-host") or judged.get(b"host") or b""
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


def _reader(family: str) -> Step:
    """The first step of a decision: check the caller, then read the original request."""

    async def read_original(ex: Exchange) -> None:
        client = ex.scope.get("client")
        peer = client[0] if client else None
        trusted = ex.gateway.trusted_proxies
        if not trusted or peer not in trusted:
            raise ForwardAuthUntrustedError(
                "Only a proxy listed in trusted_proxies may ask for forward-auth decisions."
            )
        ex.scope = original_scope(ex.scope, family)
        ex.method = ex.scope["method"]

    return Step("forward_auth", read_original, fail="closed")


_READERS = {family: _reader(family) for family in FAMILIES}


class ForwardAuthEndpoint:
    """The ASGI endpoint at :data:`FORWARD_AUTH_PATH` (any method).

    Raises :class:`ForwardAuthUntrustedError` (403), :class:`ForwardAuthAmbiguousError`
    or :class:`ForwardAuthBadRequestError` (400), or the denying gateway step's error;
    they render as problem+json.
    """

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway = getattr(self.runtime, "gateway", None)
        if not isinstance(gateway, Gateway) or scope["type"] != "http":
            raise EndpointNotFoundError("no forward-auth endpoint here")
        settings: Settings = self.runtime.settings
        # Deliberate denials propagate and render themselves; a broken step fails
        # closed (a 500 the proxy turns into a refusal), never into a 200.
        ex = await gateway.decide(scope, receive, send, _READERS[settings.forward_auth.headers])
        request_id = scope.get(SCOPE_KEY)
        headers = ex.gateway.identity_headers.rewrite((), ex.identity, request_id)
        headers += [(b"cache-control", b"no-store"), (b"content-length", b"0")]
        headers = apply_edits(headers, ex.response_edits)  # the rate-limit state
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def forward_auth_routes(runtime: Any) -> list[Route]:
    """The forward-auth decision route (every method: proxies use GET, HEAD or the original)."""
    return [Route(FORWARD_AUTH_PATH, ForwardAuthEndpoint(runtime))]
