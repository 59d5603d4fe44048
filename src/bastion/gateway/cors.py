"""Per-route Cross-Origin Resource Sharing with exact origin allow-lists: the compiled
policy the native table carries (``native/src/cors.rs`` applies it) and its refusals.

https://fetch.spec.whatwg.org/#http-cors-protocol

Rules (pinned by ``tests/gateway/test_cors.py``):

- an origin is allowed only if it equals, byte for byte, one of the route's
  configured origins (``scheme://host[:port]``, as browsers send it): no
  suffix, prefix or pattern matching, so ``https://app.example.com.evil.com``,
  ``https://evilapp.example.com``, ``http://`` for ``https://``, another port,
  a trailing dot, upper case and ``null`` are all refused; ``*`` is never
  configured (settings refuse it) and never sent;
- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``)
  for a route with CORS is answered by bastion itself (204), before
  authentication — preflights carry no credentials — and never proxied. It is
  matched by the method it asks for, so it needs no ``OPTIONS`` in the route's
  methods. A preflight for a disallowed origin, method or header is a 403
  problem (``cors_origin_not_allowed`` / ``cors_method_not_allowed`` /
  ``cors_header_not_allowed``);
- an actual request from a disallowed origin is refused with 403
  ``cors_origin_not_allowed`` (not merely left without CORS headers: a
  "simple" cross-site request would otherwise still reach the upstream);
- an allowed actual request gets ``Access-Control-Allow-Origin: <its origin>``,
  ``Access-Control-Allow-Credentials: true`` only when configured and
  ``Access-Control-Expose-Headers`` when configured, on success and on
  bastion's own error responses (so the page can read a 401 or 429); the
  upstream's own ``Access-Control-*`` headers are dropped (bastion owns CORS
  on the route);
- every response of a CORS route carries ``Vary: Origin``.

Routes without ``cors`` are untouched: a preflight to them is an ordinary
``OPTIONS`` request. bastion's own endpoints (``/oauth2/…``, the authorization
endpoint included) never pass through the gateway and never answer CORS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.gateway.errors import GatewayError
from bastion.gateway.matcher import CompiledRoute

__all__ = [
    "CorsError",
    "CorsHeaderNotAllowedError",
    "CorsMethodNotAllowedError",
    "CorsOriginNotAllowedError",
    "CorsPolicy",
    "compile_cors",
]

Header = tuple[bytes, bytes]

# CORS-safelisted request headers (Fetch §2.2.2): a browser never needs permission for them.
_SAFELISTED = frozenset({"accept", "accept-language", "content-language", "content-type", "range"})
_DEFAULT_HEADERS = ("authorization", "content-type")
_VARY = (b"vary", b"Origin")
_PREFLIGHT_VARY = (
    b"vary",
    b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
)
_ACCESS_CONTROL = b"access-control-"


class CorsError(GatewayError):
    """Root of the CORS refusals (403); every response also says ``Vary: Origin``."""

    code = "cors_error"
    status = 403
    title = "Cross-origin request refused"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.headers: list[tuple[str, str]] = [("Vary", "Origin")]
        super().__init__(detail, **extra)


class CorsOriginNotAllowedError(CorsError):
    """The request's ``Origin`` is not one of the route's allowed origins."""

    code = "cors_origin_not_allowed"


class CorsMethodNotAllowedError(CorsError):
    """A preflight asked for a method the route's CORS policy does not allow."""

    code = "cors_method_not_allowed"


class CorsHeaderNotAllowedError(CorsError):
    """A preflight asked for a request header the route's CORS policy does not allow."""

    code = "cors_header_not_allowed"


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """A route's CORS settings compiled for the hot path (header values pre-encoded)."""

    origins: frozenset[bytes]
    methods: frozenset[str]
    headers: frozenset[str]  # lower-case request header names a page may send
    allow_methods: bytes
    allow_headers: bytes
    expose_headers: bytes
    credentials: bool
    max_age: bytes


def compile_cors(route: CompiledRoute) -> CorsPolicy | None:
    """The policy of ``route``'s ``cors`` setting, or ``None`` when it has none.

    Origins and header names are taken as validated by ``bastion.settings``.
    """
    settings = route.settings.cors
    if settings is None:
        return None
    methods: Sequence[str] | None = settings.methods
    if methods is None:
        methods = sorted(route.methods or ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"))
    allowed_methods = {m.upper() for m in methods if m.upper() != "OPTIONS"}
    if "GET" in allowed_methods:
        allowed_methods.add("HEAD")
    names: Iterable[str] | None = settings.headers
    if names is None:
        names = list(_DEFAULT_HEADERS)
        api_key_header = route.settings.api_key_header
        if api_key_header:
            names.append(api_key_header)
    header_names = sorted({n.lower() for n in names})
    expose = settings.expose_headers
    return CorsPolicy(
        origins=frozenset(o.encode("ascii") for o in settings.origins),
        methods=frozenset(allowed_methods),
        headers=frozenset(header_names),
        allow_methods=", ".join(sorted(allowed_methods)).encode("ascii"),
        allow_headers=", ".join(header_names).encode("ascii"),
        expose_headers=", ".join(expose).encode("ascii"),
        credentials=settings.credentials,
        max_age=str(int(settings.max_age)).encode("ascii"),
    )
