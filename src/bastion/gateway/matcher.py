"""Route matching: host + normalised path prefix + method, compiled once.

Rules (the contract pinned by ``tests/gateway/test_matcher.py``):

- a route's ``match.path`` is a prefix matched on segment boundaries: ``/api``
  matches ``/api``, ``/api/`` and ``/api/x``, never ``/apix``; ``/`` matches
  every path;
- the longest matching prefix wins; at the same prefix a route for the
  request's host is tried before a route for any host;
- hosts compare case-insensitively, without port and trailing dot; a route
  with ``host: None`` serves every host;
- paths compare case-sensitively, after :func:`~bastion.gateway.paths.normalize_path`;
- no route for the path -> :class:`RouteNotFoundError`; routes for the path
  but none for the method -> :class:`MethodNotAllowedError` (a shorter prefix
  is *not* tried: the longest prefix owns the path).

A lookup costs one dict probe per path segment (O(depth)), independent of
the number of routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from bastion.crypto.errors import TLSConfigError
from bastion.crypto.tls import upstream_ssl_context
from bastion.gateway.errors import (
    BadRequestMethodError,
    BadRequestPathError,
    GatewayConfigError,
    MethodNotAllowedError,
    RouteNotFoundError,
)
from bastion.gateway.paths import normalize_path
from bastion.gateway.upstreams import HealthPolicy, Targets, Upstream
from bastion.settings import RouteSettings

__all__ = [
    "CompiledRoute",
    "RouteMatcher",
    "Upstream",
    "check_method",
    "normalize_host",
    "parse_upstream",
]

# RFC 9110 §5.6.2 tchar without the lower-case letters: what a method may be spelled with.
_METHOD_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_COMMON_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"}
)
_MAX_METHOD = 32


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route prepared for the hot path."""

    name: str
    prefix: str  # normalised, no trailing slash except "/"
    host: str | None  # normalised host or None for any
    methods: frozenset[str] | None
    upstream: Upstream
    public: bool
    auth: tuple[str, ...]
    strip_prefix: bool
    timeout: float
    settings: RouteSettings
    # Every target (upstream is the first), round-robin with passive health checks.
    targets: Targets | None = None
    # None: the upstream client's defaults.
    connect_timeout: float | None = None
    read_timeout: float | None = None

    def allows(self, method: str) -> bool:
        """Whether this route accepts ``method`` (HEAD is accepted where GET is)."""
        methods = self.methods
        return methods is None or method in methods or (method == "HEAD" and "GET" in methods)

    def upstream_path(self, path: str) -> str:
        """The path to forward for the normalised request ``path`` (prefix stripped, base added)."""
        if self.strip_prefix and self.prefix != "/":
            path = path[len(self.prefix) :] or "/"
            if not path.startswith("/"):
                path = "/" + path
        base = self.upstream.base_path
        return base + path if base else path


def normalize_host(host: str) -> str:
    """Lower-case ``host`` and drop its port, IPv6 brackets' port and trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    colon = host.rfind(":")
    if colon != -1:
        host = host[:colon]
    return host.rstrip(".")


def check_method(method: str) -> None:
    """Refuse a method that is not an upper-case token; raises :class:`BadRequestMethodError`."""
    if method in _COMMON_METHODS:
        return
    if not method or len(method) > _MAX_METHOD or not set(method) <= _METHOD_CHARS:
        raise BadRequestMethodError(
            "The request method must be an upper-case HTTP method (e.g. DELETE, not delete)."
        )


def parse_upstream(url: str, *, route: str = "?") -> Upstream:
    """Parse an upstream URL ``http(s)://host[:port][/base]``.

    Raises :class:`GatewayConfigError` naming the route for anything else
    (other schemes, user info, query, fragment, missing host, bad port).
    """
    where = f"routes[{route}].upstream"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise GatewayConfigError(f"{where} must be an http:// or https:// URL, got {url!r}.")
    if parts.username is not None or parts.password is not None:
        raise GatewayConfigError(f"{where} must not contain user info.")
    if parts.query or parts.fragment:
        raise GatewayConfigError(f"{where} must not contain a query or fragment.")
    host = parts.hostname
    if not host:
        raise GatewayConfigError(f"{where} has no host.")
    try:
        port = parts.port
    except ValueError as exc:
        raise GatewayConfigError(f"{where} has an invalid port.") from exc
    default_port = 443 if parts.scheme == "https" else 80
    host_text = f"[{host}]" if ":" in host else host
    host_header = host_text if port in (None, default_port) else f"{host_text}:{port}"
    base = parts.path.rstrip("/")
    if base:
        try:
            base = normalize_path(base.encode("utf-8"))
        except BadRequestPathError as exc:
            raise GatewayConfigError(f"{where} has an invalid base path: {exc.detail}") from exc
        base = base.rstrip("/")
    return Upstream(
        scheme=parts.scheme,
        host=host,
        port=port or default_port,
        base_path=base,
        host_header=host_header.encode("ascii"),
    )


def compile_route(route: RouteSettings) -> CompiledRoute:
    """Validate one route and prepare it for matching; raises :class:`GatewayConfigError`."""
    match = route.match
    try:
        prefix = normalize_path(match.path.encode("utf-8"))
    except BadRequestPathError as exc:
        raise GatewayConfigError(
            f"routes[{route.name}].match.path {match.path!r} is invalid: {exc.detail}"
        ) from exc
    if prefix != match.path.rstrip("/") and prefix != match.path:
        raise GatewayConfigError(
            f"routes[{route.name}].match.path {match.path!r} is not in normal form; "
            f"write {prefix!r}."
        )
    if prefix != "/":
        prefix = prefix.rstrip("/")
    methods = None if match.methods is None else frozenset(m.upper() for m in match.methods)
    if methods is not None and not methods:
        raise GatewayConfigError(f"routes[{route.name}].match.methods must not be empty.")
    if route.timeout <= 0:
        raise GatewayConfigError(f"routes[{route.name}].timeout must be positive.")
    upstreams = _compile_upstreams(route)
    return CompiledRoute(
        name=route.name,
        prefix=prefix,
        host=normalize_host(match.host) if match.host else None,
        methods=methods,
        upstream=upstreams[0],
        public=route.public,
        auth=tuple(route.auth),
        strip_prefix=route.strip_prefix,
        timeout=float(route.timeout),
        settings=route,
        targets=Targets(upstreams, _health_policy(route)),
        connect_timeout=float(route.connect_timeout),
        read_timeout=float(route.read_timeout),
    )


def _compile_upstreams(route: RouteSettings) -> tuple[Upstream, ...]:
    """Parse the route's upstream URL(s) and attach its TLS context to https targets."""
    urls = route.upstreams
    if not urls:
        raise GatewayConfigError(f"routes[{route.name}].upstream names no URL.")
    parsed = [parse_upstream(url, route=route.name) for url in urls]
    ca = route.upstream_ca
    cert = route.upstream_client_cert
    key = route.upstream_client_key
    if ca is None and cert is None:
        return tuple(parsed)  # https with the client's default context (system CAs)
    try:
        context = upstream_ssl_context(ca, cert, key, where=f"routes[{route.name}]")
    except TLSConfigError as exc:
        raise GatewayConfigError(exc.detail) from None
    profile = f"{route.name}:{ca}:{cert}"
    return tuple(
        replace(u, ssl_context=context, tls_profile=profile) if u.scheme == "https" else u
        for u in parsed
    )


def _health_policy(route: RouteSettings) -> HealthPolicy:
    health = route.health
    return HealthPolicy(
        failures=health.failures, cooldown=health.cooldown, max_cooldown=health.max_cooldown
    )


class RouteMatcher:
    """Routes compiled into ``{(host, prefix): [routes]}`` for O(depth) lookups.

    Construction raises :class:`GatewayConfigError` for an invalid route or two
    routes that could both serve the same host, prefix and method.
    """

    def __init__(self, routes: Iterable[RouteSettings]) -> None:
        self.routes: tuple[CompiledRoute, ...] = tuple(compile_route(r) for r in routes)
        table: dict[tuple[str | None, str], list[CompiledRoute]] = {}
        names: set[str] = set()
        for route in self.routes:
            if route.name in names:
                raise GatewayConfigError(f"Two routes are named {route.name!r}; names are unique.")
            names.add(route.name)
            bucket = table.setdefault((route.host, route.prefix), [])
            for other in bucket:
                if route.methods is None or other.methods is None or route.methods & other.methods:
                    raise GatewayConfigError(
                        f"routes[{route.name}] and routes[{other.name}] both match "
                        f"host {route.host or '*'} path {route.prefix} for the same methods."
                    )
            bucket.append(route)
        self._table: dict[tuple[str | None, str], tuple[CompiledRoute, ...]] = {
            key: tuple(bucket) for key, bucket in table.items()
        }
        self._hosts = frozenset(route.host for route in self.routes if route.host is not None)

    def match(self, host: str, path: str, method: str) -> CompiledRoute:
        """Return the route for a request.

        ``host`` is the raw Host header value (``""`` if absent); ``path`` must
        already be normalised. Raises :class:`RouteNotFoundError` or
        :class:`MethodNotAllowedError`.
        """
        table = self._table
        host_key = normalize_host(host) if host else ""
        if host_key not in self._hosts:
            host_key = ""  # no route names this host: only any-host routes can match
        prefix = path.rstrip("/") or "/"
        while True:
            specific = table.get((host_key, prefix)) if host_key else None
            generic = table.get((None, prefix))
            if specific is not None or generic is not None:
                candidates = (specific or ()) + (generic or ())
                for route in candidates:
                    if route.allows(method):
                        return route
                allow: set[str] = set()
                for route in candidates:
                    if route.methods is not None:
                        allow |= route.methods
                        if "GET" in route.methods:
                            allow.add("HEAD")
                raise MethodNotAllowedError(f"{method} is not allowed on this path.", allow=allow)
            if prefix == "/":
                raise RouteNotFoundError("No route matches this request.")
            cut = prefix.rfind("/")
            prefix = prefix[:cut] or "/"
