"""The ``cors`` step: per-route Cross-Origin Resource Sharing with exact origin allow-lists.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.gateway.errors import GatewayError

if TYPE_CHECKING:
    from bastion.gateway.matcher import CompiledRoute
    from bastion.gateway.pipeline import Exchange
    from bastion.gateway.proxy import ResponseEdit

__all__ = [
    "CorsError",
    "CorsHeaderNotAllowedError",
    "CorsMethodNotAllowedError",
    "CorsOriginNotAllowedError",
    "CorsPolicy",
    "compile_cors",
    "cors",
    "preflight_method",
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
    settings = getattr(route.settings, "cors", None)
    if settings is None:
        return None
    methods: Sequence[str] | None = getattr(settings, "methods", None)
    if methods is None:
        methods = sorted(route.methods or ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"))
    allowed_methods = {m.upper() for m in methods if m.upper() != "OPTIONS"}
    if "GET" in allowed_methods:
        allowed_methods.add("HEAD")
    names: Iterable[str] | None = getattr(settings, "headers", None)
    if names is None:
        names = list(_DEFAULT_HEADERS)
        api_key_header = getattr(route.settings, "api_key_header", None)
        if api_key_header:
            names.append(api_key_header)
    header_names = sorted({n.lower() for n in names})
    expose: Iterable[str] = getattr(settings, "expose_headers", None) or ()
    return CorsPolicy(
        origins=frozenset(o.encode("ascii") for o in settings.origins),
        methods=frozenset(allowed_methods),
        headers=frozenset(header_names),
        allow_methods=", ".join(sorted(allowed_methods)).encode("ascii"),
        allow_headers=", ".join(header_names).encode("ascii"),
        expose_headers=", ".join(expose).encode("ascii"),
        credentials=bool(getattr(settings, "credentials", False)),
        max_age=str(int(getattr(settings, "max_age", 600))).encode("ascii"),
    )


def _headers(scope: Mapping[str, Any], wanted: bytes) -> list[bytes]:
    return [value for name, value in scope.get("headers") or () if name.lower() == wanted]


def preflight_method(scope: Mapping[str, Any]) -> str | None:
    """The method a CORS preflight asks for; ``None`` when the request is not a preflight."""
    if scope.get("method") != "OPTIONS":
        return None
    requested = _headers(scope, b"access-control-request-method")
    if len(requested) != 1 or not _headers(scope, b"origin"):
        return None
    return requested[0].decode("latin-1").strip()


def _origin(scope: Mapping[str, Any], policy: CorsPolicy) -> bytes:
    """The request's origin when it is allowed; raises CorsOriginNotAllowedError otherwise."""
    origins = _headers(scope, b"origin")
    # Exactly one Origin, compared byte for byte: no normalisation an attacker could steer.
    if len(origins) != 1 or origins[0] not in policy.origins:
        raise CorsOriginNotAllowedError("This origin may not call this route from a browser.")
    return origins[0]


def _is_access_control(name: bytes) -> bool:
    return name.startswith(_ACCESS_CONTROL)


def _cors_edit(extra: Sequence[Header]) -> ResponseEdit:
    """The upstream's own CORS headers replaced by the route's (applied by the proxy)."""
    return (_is_access_control, extra)


async def _answer_preflight(ex: Exchange, policy: CorsPolicy) -> None:
    origin = _origin(ex.scope, policy)
    method = ex.preflight or ""
    if method not in policy.methods:
        raise CorsMethodNotAllowedError(f"{method[:32]!r} is not allowed from this origin.")
    for value in _headers(ex.scope, b"access-control-request-headers"):
        for token in value.decode("latin-1").split(","):
            name = token.strip().lower()
            if name and name not in policy.headers and name not in _SAFELISTED:
                raise CorsHeaderNotAllowedError(
                    f"Request header {name[:64]!r} is not allowed from this origin."
                )
    headers: list[Header] = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", policy.allow_methods),
        (b"access-control-max-age", policy.max_age),
        _PREFLIGHT_VARY,
        (b"content-length", b"0"),
    ]
    if policy.allow_headers:
        headers.append((b"access-control-allow-headers", policy.allow_headers))
    if policy.credentials:
        headers.append((b"access-control-allow-credentials", b"true"))
    await ex.send({"type": "http.response.start", "status": 204, "headers": headers})
    await ex.send({"type": "http.response.body", "body": b""})
    ex.answered = True


async def cors(ex: Exchange) -> None:
    """Answer a preflight, refuse a disallowed origin, or add the CORS response headers.

    Raises :class:`CorsOriginNotAllowedError`, :class:`CorsMethodNotAllowedError`
    or :class:`CorsHeaderNotAllowedError` (403).
    """
    route = ex.route
    assert route is not None
    policy = ex.gateway.edge.cors.get(route.name)
    if policy is None:
        return
    if ex.preflight is not None:
        await _answer_preflight(ex, policy)
        return
    if not _headers(ex.scope, b"origin"):
        extra: list[Header] = [_VARY]
    else:
        origin = _origin(ex.scope, policy)
        extra = [(b"access-control-allow-origin", origin), _VARY]
        if policy.credentials:
            extra.append((b"access-control-allow-credentials", b"true"))
        if policy.expose_headers:
            extra.append((b"access-control-expose-headers", policy.expose_headers))
    ex.edge_headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in extra]
    ex.response_edits.append(_cors_edit(extra))
