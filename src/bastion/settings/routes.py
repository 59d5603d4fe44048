"""The gateway's ``routes``: what each route matches, where it proxies, how it
authenticates and authorizes, its limits, CORS, IP rules and WebSocket pass-through.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PlainValidator, field_validator, model_validator

from bastion.protocol.rfc6749.scope import is_scope_token
from bastion.settings._values import Loc, Problems, show
from bastion.settings.fields import (
    _HEADER_NAME,
    _RESERVED_HEADERS,
    ByteSize,
    Count,
    FilePath,
    Network,
    Seconds,
    _duration,
    _http_url,
    _Section,
    _unreadable,
)
from bastion.settings.rates import Limit

AuthMethod = Literal["api_key", "jwt", "introspection", "session", "mtls"]
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _method_list(
    value: list[str] | None, allowed: tuple[str, ...], what: str, *, empty: str
) -> list[str] | None:
    """``value`` upper-cased, without repeats; every name not in ``allowed`` is a problem.

    None (the field left out) stays None; an empty list is refused with ``empty``.
    """
    if value is None:
        return None
    if not value:
        raise ValueError(empty)
    methods: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for index, method in enumerate(value):
        upper = method.upper()
        if upper not in allowed:
            hint = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
            problems.append(((index,), f"{show(method)} is not {what} — use {hint}"))
        elif upper not in methods:
            methods.append(upper)
    if problems:
        raise Problems(problems)
    return methods


_ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_HOST = re.compile(
    r"(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*)"
    r"(?::[0-9]{1,5})?"
)


class RouteMatch(_Section):
    """Which requests a route takes: a path prefix (on segment boundaries), host, methods."""

    path: str
    host: str | None = None
    methods: list[str] | None = None

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{show(value)} must start with '/' — e.g. /api/orders")
        if any(c in value for c in "?#") or any(c.isspace() or ord(c) < 32 for c in value):
            raise ValueError(
                f"{show(value)} is not a plain path — no query, fragment, spaces or control "
                "characters"
            )
        segments = value.split("/")[1:]
        if any(s in (".", "..") for s in segments) or "//" in value.rstrip("/"):
            raise ValueError(
                f"{show(value)} is not a normalised path — no '.', '..' or empty segments"
            )
        # A prefix matches on segment boundaries, so "/api/" and "/api" mean the same.
        return value.rstrip("/") or "/"

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host = value.lower().rstrip(".")
        if not _HOST.fullmatch(host):
            raise ValueError(
                f"{show(value)} is not a host name — use e.g. api.example.com "
                "(optionally with :port)"
            )
        return host

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str] | None) -> list[str] | None:
        return _method_list(
            value,
            HTTP_METHODS,
            "a method bastion routes",
            empty="is an empty list, which matches nothing — remove it to match every method",
        )

    def overlaps(self, other: RouteMatch) -> bool:
        """Whether this match and ``other`` take exactly the same host + path for some method."""
        if (self.host, self.path) != (other.host, other.path):
            return False
        if self.methods is None or other.methods is None:
            return True
        return bool(set(self.methods) & set(other.methods))


class RouteLimit(_Section):
    """One rate limit of a route: ``rate`` requests (bucket ``burst``) per ``per`` value.

    ``per`` picks whose bucket a request draws from: its API key, subject
    (token ``sub``), OAuth client, client IP, or the route as a whole. ``fail``
    says what the gateway does when the shared limiter (Redis) is unreachable:
    ``closed`` answers 503, ``open`` decides with a local limiter.
    """

    per: Literal["key", "subject", "client", "ip", "route"]
    rate: str
    burst: Count | None = None
    fail: Literal["open", "closed"] = "closed"

    @field_validator("rate")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        # Limit.parse raises ValueError naming the bad text and the expected form.
        Limit.parse(value)
        return value

    @model_validator(mode="after")
    def _check_limit(self) -> RouteLimit:
        try:
            self.limit()
        except ValueError as exc:
            raise Problems([(("burst",), str(exc))]) from None
        return self

    def limit(self) -> Limit:
        """The :class:`~bastion.ratelimit.Limit` this entry describes.

        Raises ValueError when the rate or burst is invalid.
        """
        return Limit.parse(self.rate, burst=self.burst)


class RouteJwtSettings(_Section):
    """How a route's ``jwt`` method accepts tokens: which issuers and which audience.

    ``issuers`` names ``self`` (bastion's own access tokens) and/or issuers from
    ``trusted_issuers``; default ``[self]``. ``audience``: the ``aud`` a token
    must carry here (RFC 8707 / RFC 9068 §4). Without it, bastion's own tokens
    must be for bastion's default API audience (the issuer URL, what a token
    gets when no ``resource`` was asked for) and external tokens for one of
    their issuer's ``audiences``.
    """

    issuers: list[str] = Field(default_factory=lambda: ["self"])
    audience: str | None = None

    @field_validator("issuers")
    @classmethod
    def _check_issuers(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("is empty — name self and/or issuers from trusted_issuers")
        if len(set(value)) != len(value):
            raise ValueError("names an issuer twice — keep one")
        return [v if v == "self" else v.rstrip("/") for v in value]

    @field_validator("audience")
    @classmethod
    def _check_audience(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("is empty — give the aud tokens for this route carry, or remove it")
        return value


ClaimValue = str | int | bool | list[str]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(value: object) -> str:
    """Check one CORS origin: exactly ``scheme://host[:port]`` as a browser sends it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{show(value)} is not an origin — use e.g. https://app.example.com")
    if value == "*":
        raise ValueError(
            "'*' is not allowed — bastion matches exact origins only; list each origin, "
            "e.g. https://app.example.com"
        )
    if value.lower() == "null":
        raise ValueError(
            "'null' is not allowed — it is the origin of sandboxed frames, file: pages and "
            "redirects, which any site can produce; list real origins"
        )
    example = "https://app.example.com"
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in _DEFAULT_PORTS or not rest:
        raise ValueError(f"{show(value)} is not an http(s) origin — use e.g. {example}")
    if any(c in rest for c in "/?#@*\\") or any(c.isspace() for c in rest):
        raise ValueError(
            f"{show(value)} is not an origin — only scheme://host[:port], no path, query, "
            f"user info or wildcard (e.g. {example})"
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"{show(value)} has an invalid port — use e.g. {example}:8443") from None
    host = parts.hostname or ""
    hostport = rest.lower()
    if not _HOST.fullmatch(hostport) or host.endswith("."):
        raise ValueError(f"{show(value)} has an invalid host — use e.g. {example}")
    canonical_scheme = scheme.lower()
    shown_host = f"[{host}]" if ":" in host else host
    canonical = f"{canonical_scheme}://{shown_host}"
    if port is not None and port != _DEFAULT_PORTS[canonical_scheme]:
        canonical += f":{port}"
    if value != canonical:
        # Browsers send origins lower-case and without the default port; a differently
        # written entry would silently never match.
        raise ValueError(f"{show(value)} is not written as browsers send it — write {canonical}")
    return value


def _header_names(value: object) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"{show(value)} is not a list of header names — use e.g. [X-Request-Id]")
    names: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for index, name in enumerate(value):
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            problems.append(
                ((index,), f"{show(name)} is not a header name — use letters, digits and '-'")
            )
        elif name.lower() in (n.lower() for n in names):
            problems.append(((index,), f"{show(name)} is listed twice — keep one"))
        else:
            names.append(name)
    if problems:
        raise Problems(problems)
    return names


class CorsSettings(_Section):
    """CORS for one route: the exact origins whose pages may call it from a browser.

    ``methods`` defaults to the route's methods; ``headers`` (request headers a page may
    send) defaults to Authorization, Content-Type and the route's ``api_key_header``.
    """

    origins: list[Annotated[str, PlainValidator(_origin)]]
    methods: list[str] | None = None
    headers: Annotated[list[str], PlainValidator(_header_names)] | None = None
    expose_headers: Annotated[list[str], PlainValidator(_header_names)] = Field(
        default_factory=list
    )
    credentials: bool = False
    max_age: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=86400)] = 600.0

    @field_validator("origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(
                "is empty, which allows no page — list origins, e.g. [https://app.example.com]"
            )
        seen: set[str] = set()
        for index, origin in enumerate(value):
            if origin in seen:
                raise Problems([((index,), f"{show(origin)} is listed twice — keep one")])
            seen.add(origin)
        return value

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str] | None) -> list[str] | None:
        # OPTIONS is the preflight itself, never the method a page asks for.
        allowed = tuple(method for method in HTTP_METHODS if method != "OPTIONS")
        return _method_list(
            value,
            allowed,
            "a method a page can ask for",
            empty="is empty — remove it to allow the route's methods",
        )


class IpAccessSettings(_Section):
    """Client-address rules of a route: ``deny`` wins; an empty ``allow`` allows all."""

    allow: list[Network] = Field(default_factory=list)
    deny: list[Network] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> IpAccessSettings:
        if not self.allow and not self.deny:
            raise ValueError(
                "has neither allow nor deny — list networks, e.g. allow: [10.0.0.0/8], or remove ip"
            )
        return self


class UpstreamHealth(_Section):
    """Passive health checking of a route's upstream targets.

    ``failures`` consecutive connection failures (refused, reset, timed out,
    TLS handshake failed) eject a target for ``cooldown`` seconds; each failed
    half-open probe after a cool-down doubles it, up to ``max_cooldown``.
    """

    failures: Count = 3
    cooldown: Seconds = 5.0
    max_cooldown: Seconds = 300.0

    @model_validator(mode="after")
    def _check_cooldowns(self) -> UpstreamHealth:
        if self.max_cooldown < self.cooldown:
            raise Problems(
                [
                    (
                        ("max_cooldown",),
                        f"{show(self.max_cooldown)} is shorter than cooldown "
                        f"({show(self.cooldown)}) — make max_cooldown at least cooldown",
                    )
                ]
            )
        return self


class RouteWebSocket(_Section):
    """WebSocket pass-through on a route (off unless enabled; ``websocket: true`` enables it)."""

    enabled: bool = False
    idle_timeout: Seconds = 300.0
    max_duration: Seconds = 86400.0
    max_message_size: Count = 1024 * 1024


def _websocket_shorthand(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class RouteSettings(_Section):
    """One gateway route: which requests, where they go, how they are authenticated.

    Default deny: a route says ``public: true`` or lists ``auth`` methods, never
    neither and never both.
    """

    name: str
    match: RouteMatch
    # One URL, or a list of URLs served round-robin with passive health checks.
    upstream: str | list[str]
    public: bool = False
    auth: list[AuthMethod] = Field(default_factory=list)
    # Required scopes: one list for every method, or a mapping method -> list ("*": the
    # methods not listed). Checked by the gateway's authorize step (403 insufficient_scope).
    scopes: dict[str, list[str]] | list[str] = Field(default_factory=list)
    # Where the api_key method also looks for a key (the raw key as the value), besides
    # "Authorization: Bearer bst_…"; e.g. X-API-Key.
    api_key_header: str | None = None
    strip_prefix: bool = False
    timeout: Seconds = 30.0
    # Rate limits, all checked together by the gateway's limit step (429 when one refuses).
    limits: list[RouteLimit] = Field(default_factory=list)
    # Upstream timeouts: per connection attempt, and per wait for the next response bytes
    # (``timeout`` bounds the whole exchange).
    connect_timeout: Seconds = 5.0
    read_timeout: Seconds = 30.0
    health: UpstreamHealth = Field(default_factory=UpstreamHealth)
    # TLS to https upstreams: always verified; a private CA bundle instead of the system's,
    # and a client certificate for upstream mTLS.
    upstream_ca: FilePath | None = None
    upstream_client_cert: FilePath | None = None
    upstream_client_key: FilePath | None = None
    websocket: Annotated[RouteWebSocket, BeforeValidator(_websocket_shorthand)] = Field(
        default_factory=RouteWebSocket
    )
    # Which issuers / audience the jwt method accepts here (default: bastion's own tokens
    # for its default API audience).
    jwt: RouteJwtSettings | None = None
    # Authorization beyond scopes (403 claim_mismatch / missing_role): claims the identity
    # must carry with exactly these values, and roles (all required) read from roles_claim
    # (a dotted path, e.g. realm_access.roles).
    claims: dict[str, ClaimValue] = Field(default_factory=dict)
    roles: list[str] = Field(default_factory=list)
    roles_claim: str = "roles"
    # The aud of the signed identity assertion (default: the upstream URL as configured;
    # required for an upstream with several targets when the assertion is on).
    assertion_audience: str | None = None
    # Browser cross-origin access (exact origins); None: no CORS, browsers' same-origin rule.
    cors: CorsSettings | None = None
    # Client-address allow / deny networks, checked before authentication (403 ip_not_allowed).
    ip: IpAccessSettings | None = None
    # The largest request body this route takes (413 body_too_large); None: request_limits.max_body.
    max_body: ByteSize | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _ROUTE_NAME.fullmatch(value):
            raise ValueError(
                f"{show(value)} is not a route name — use lower-case letters, digits, '-' and "
                "'_', starting with a letter or digit, at most 63 characters"
            )
        return value

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            return _http_url(value, "http://orders.internal:9000")
        if not value:
            raise ValueError(
                "is an empty list — give one URL or a list of URLs, e.g. "
                "[http://orders-1.internal:9000, http://orders-2.internal:9000]"
            )
        urls: list[str] = []
        problems: list[tuple[Loc, str]] = []
        for index, url in enumerate(value):
            try:
                checked = _http_url(url, "http://orders-1.internal:9000")
            except ValueError as exc:
                problems.append(((index,), str(exc)))
                continue
            if checked in urls:
                problems.append(((index,), f"{show(url)} is listed twice — keep one"))
            else:
                urls.append(checked)
        if problems:
            raise Problems(problems)
        return urls

    @property
    def upstreams(self) -> list[str]:
        """The upstream URLs as a list (one entry when ``upstream`` is a single URL)."""
        return [self.upstream] if isinstance(self.upstream, str) else list(self.upstream)

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: list[AuthMethod]) -> list[AuthMethod]:
        seen: set[str] = set()
        for index, method in enumerate(value):
            if method in seen:
                raise Problems([((index,), f"{show(method)} is listed twice — keep one")])
            seen.add(method)
        return value

    @field_validator("scopes", mode="plain")
    @classmethod
    def _check_scopes(cls, value: object) -> dict[str, list[str]] | list[str]:
        if value is None:
            return []
        if isinstance(value, list):
            return _scope_list(value, ())
        if not isinstance(value, dict):
            raise ValueError(
                f"{show(value)} is not a list of scopes or a mapping of methods to scopes — "
                "use e.g. [orders:read] or {GET: [orders:read], POST: [orders:write]}"
            )
        scopes: dict[str, list[str]] = {}
        problems: list[tuple[Loc, str]] = []
        for key, tokens in value.items():
            method = key.upper() if isinstance(key, str) else key
            if method != "*" and method not in HTTP_METHODS:
                problems.append(
                    (
                        (str(key),),
                        f"{show(key)} is not a method — use {', '.join(HTTP_METHODS[:-1])}, "
                        f"{HTTP_METHODS[-1]} or '*' (every method not listed)",
                    )
                )
                continue
            if method in scopes:
                problems.append(((str(key),), "is listed twice — keep one"))
                continue
            if not isinstance(tokens, list):
                problems.append(
                    (
                        (str(key),),
                        f"{show(tokens)} is not a list of scopes — use e.g. [orders:read], "
                        "or [] for none",
                    )
                )
                continue
            try:
                scopes[method] = _scope_list(tokens, (str(key),))
            except Problems as exc:
                problems.extend(exc.items)
        if problems:
            raise Problems(problems)
        return scopes

    @field_validator("roles")
    @classmethod
    def _check_roles(cls, value: list[str]) -> list[str]:
        problems: list[tuple[Loc, str]] = []
        for index, role in enumerate(value):
            if not isinstance(role, str) or not role.strip():
                problems.append(((index,), f"{show(role)} is not a role — use e.g. admin"))
            elif value.index(role) != index:
                problems.append(((index,), f"{show(role)} is listed twice — keep one"))
        if problems:
            raise Problems(problems)
        return value

    @field_validator("roles_claim")
    @classmethod
    def _check_roles_claim(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            raise ValueError(
                f"{show(value)} is not a claim path — use a claim name or a dotted path, "
                "e.g. roles or realm_access.roles"
            )
        return value

    @field_validator("api_key_header")
    @classmethod
    def _check_api_key_header(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(
                f"{show(value)} is not a header name — use letters, digits and '-', e.g. X-API-Key"
            )
        lower = value.lower()
        if lower == "authorization":
            raise ValueError(
                "Authorization is always read (as 'Bearer bst_…') — remove api_key_header"
            )
        if lower in _RESERVED_HEADERS or lower.startswith(("x-forwarded-", "proxy-")):
            raise ValueError(
                f"{show(value)} is a header the HTTP layer or the gateway controls — "
                "use a header of your own, e.g. X-API-Key"
            )
        return value

    @model_validator(mode="after")
    def _check_cors(self) -> RouteSettings:
        cors = self.cors
        if cors is None or cors.methods is None or self.match.methods is None:
            return self
        extra = [m for m in cors.methods if m not in self.match.methods]
        if extra:
            raise Problems(
                [
                    (
                        ("cors", "methods"),
                        f"names {', '.join(extra)}, which match.methods does not accept — "
                        "remove them or add them to match.methods",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _default_deny(self) -> RouteSettings:
        if self.public and self.auth:
            raise ValueError(
                "public: true and auth exclude each other — a public route is not "
                "authenticated; remove one of them"
            )
        if not self.public and not self.auth:
            raise ValueError(
                "say how requests are authenticated — set auth: [api_key, jwt] or public: true"
            )
        if self.public and self.scopes:
            raise ValueError(
                "scopes need an authenticated caller — a public route has none; remove scopes "
                "or replace public: true with auth"
            )
        if self.public and (self.claims or self.roles):
            raise ValueError(
                "claims and roles need an authenticated caller — a public route has none; "
                "remove them or replace public: true with auth"
            )
        if self.jwt is not None and "jwt" not in self.auth:
            raise ValueError(
                "jwt settings are only read by the jwt method — add jwt to auth or remove jwt"
            )
        if (self.upstream_client_cert is None) != (self.upstream_client_key is None):
            raise ValueError(
                "upstream_client_cert and upstream_client_key go together — set both (a "
                "client certificate for upstream mTLS and its private key) or neither"
            )
        tls_files = {
            "upstream_ca": self.upstream_ca,
            "upstream_client_cert": self.upstream_client_cert,
            "upstream_client_key": self.upstream_client_key,
        }
        tls_keys = [key for key, path in tls_files.items() if path is not None]
        if tls_keys and not any(u.startswith("https://") for u in self.upstreams):
            raise ValueError(
                f"{tls_keys[0]} is only used for https upstreams — use an https:// upstream "
                f"URL or remove {tls_keys[0]}"
            )
        for key, path in tls_files.items():
            if path is not None and (problem := _unreadable(path)):
                raise Problems([((key,), problem)])
        if self.api_key_header is not None and "api_key" not in self.auth:
            raise ValueError(
                "api_key_header is only read by the api_key method — add api_key to auth or "
                "remove api_key_header"
            )
        if isinstance(self.scopes, dict) and self.scopes and "*" not in self.scopes:
            accepted = self.match.methods or list(HTTP_METHODS)
            missing = [
                m
                for m in accepted
                if m not in self.scopes and not (m == "HEAD" and "GET" in self.scopes)
            ]
            if missing:
                # Default deny: a method the mapping forgets must not pass with no scope at all.
                raise Problems(
                    [
                        (
                            ("scopes",),
                            f"names no scopes for {', '.join(missing)}, which the route "
                            "accepts — list them (use [] for none), add '*' for every other "
                            "method, or narrow match.methods",
                        )
                    ]
                )
        return self


def _scope_list(tokens: list[object], loc: Loc) -> list[str]:
    """Check a list of RFC 6749 scope tokens; raise Problems naming each bad entry."""
    scopes: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or not is_scope_token(token):
            problems.append(
                (
                    (*loc, index),
                    f"{show(token)} is not a scope — one word of visible characters without "
                    "spaces, '\"' or '\\', e.g. orders:read",
                )
            )
        elif token in scopes:
            problems.append(((*loc, index), f"{show(token)} is listed twice — keep one"))
        else:
            scopes.append(token)
    if problems:
        raise Problems(problems)
    return scopes
