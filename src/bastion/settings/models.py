"""The typed configuration of one bastion process: every key, its default and its rules.

Every model forbids unknown keys and is frozen once loaded. Validators raise
``ValueError`` (or :class:`~bastion.settings._values.Problems` for several
problems at once) with a message that shows the bad value — secrets redacted —
and the fix; :func:`bastion.settings.load_settings` turns them into
:class:`~bastion.settings.SettingsError` lines that name the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    SecretStr,
    field_validator,
    model_validator,
)

from bastion.ratelimit.gcra import Limit
from bastion.settings._values import Loc, Problems, dotted, show

AuthMethod = Literal["api_key", "jwt", "introspection", "session", "mtls"]
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
STORAGE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+asyncpg")
SHARED_SCHEMES = ("memory", "redis", "rediss", "unix")

_ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_HOST = re.compile(
    r"(?:\[[0-9a-f:.]+\]|[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*)"
    r"(?::[0-9]{1,5})?"
)


# ---------------------------------------------------------------------------
# reusable value validators


def _not_bool(value: object) -> object:
    # YAML turns yes/no/on/off into booleans; pydantic would then accept them as 1/0.
    if isinstance(value, bool):
        raise ValueError(f"{show(value)} is not a number")
    return value


def _port(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{show(value)} is not a valid port — use a number from 1 to 65535")
    return value


def _path(value: object) -> object:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("is empty — give a file system path")
        return Path(value).expanduser()
    return value


def _network(value: object) -> IPv4Network | IPv6Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return ipaddress.ip_network(value.strip())
        except ValueError:
            try:
                network = ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                pass
            else:
                raise ValueError(
                    f"{show(value)} has host bits set — did you mean {network}?"
                ) from None
    raise ValueError(
        f"{show(value)} is not an IP address or network — use e.g. 10.0.0.0/8 or 192.0.2.10"
    )


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _http_url(value: str, example: str) -> str:
    """Check an absolute http(s) URL without query, fragment or user info; strip a final "/"."""
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{show(value)} is not an absolute http(s) URL — use e.g. {example}")
    if "@" in parts.netloc:
        raise ValueError(
            f"{show(value)} contains a user name or password — remove it (e.g. {example})"
        )
    if "?" in value or "#" in value:
        raise ValueError(
            f"{show(value)} has a query or fragment — remove everything from '?' or '#'"
        )
    return value[:-1] if parts.path.endswith("/") else value


_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


def _duration(value: object) -> object:
    """Accept seconds as a number, or a string like "90d", "12h", "15m", "30s", "250ms"."""
    value = _not_bool(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{show(value)} is not a duration — use seconds or e.g. 30s, 15m, 12h, 90d"
            )
        return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return value


Port = Annotated[int, PlainValidator(_port)]
FilePath = Annotated[Path, BeforeValidator(_path)]
Network = Annotated[IPv4Network | IPv6Network, PlainValidator(_network)]
Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------
# sections


class ListenSettings(_Section):
    """Where the server listens."""

    host: str = "127.0.0.1"
    port: Port = 8443

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or "/" in value:
            raise ValueError(
                f"{show(value)} is not a host name or IP address — use e.g. 0.0.0.0 or 127.0.0.1"
            )
        return value


class TLSSettings(_Section):
    """How the server does TLS: a generated dev certificate, configured files, or off."""

    mode: Literal["auto", "files", "off"] = "auto"
    cert: FilePath | None = None
    key: FilePath | None = None
    min_version: Literal["1.2", "1.3"] = "1.2"

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        # YAML reads `min_version: 1.3` as a float.
        if isinstance(value, float) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _check_files(self) -> TLSSettings:
        if self.mode != "files":
            return self
        problems: list[tuple[Loc, str]] = []
        if self.cert is None or self.key is None:
            missing = [name for name in ("cert", "key") if getattr(self, name) is None]
            problems.append(
                (
                    (),
                    f"tls.{' and tls.'.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                    "missing — a certificate (PEM) and its private key go together; set both "
                    "tls.cert and tls.key",
                )
            )
        for name in ("cert", "key"):
            path = getattr(self, name)
            if path is not None and (problem := _unreadable(path)):
                problems.append(((name,), problem))
        if problems:
            raise Problems(problems)
        return self


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return f"file {path} does not exist — check the path"
    except IsADirectoryError:
        return f"{path} is a directory — give the file itself"
    except PermissionError:
        return f"file {path} is not readable by this user — fix its permissions"
    except OSError as exc:
        return f"file {path} cannot be read ({exc.strerror or exc}) — check the path"


class StorageSettings(_Section):
    """The durable SQL database."""

    url: str | None = None
    pool_size: Count = 10

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in STORAGE_SCHEMES or not rest.strip("/"):
            raise ValueError(
                f"{show(value)} is not a supported database URL — use "
                "sqlite:///path/to/bastion.db or postgresql://user@host/dbname "
                f"(schemes: {', '.join(STORAGE_SCHEMES)})"
            )
        scheme = scheme.lower()
        if scheme == "postgres":
            scheme = "postgresql"
        return f"{scheme}://{rest}"


class SharedSettings(_Section):
    """The shared ephemeral state: in-process for one node, Redis for several."""

    url: str = "memory://"
    key_prefix: str = "bastion:"

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        scheme = scheme.lower()
        if not sep or scheme not in SHARED_SCHEMES or (scheme == "memory" and rest):
            raise ValueError(
                f"{show(value)} is not a supported shared-state URL — use memory:// (one "
                "process), redis://host:6379/0, rediss://host:6380/0 or unix:///path/redis.sock"
            )
        return f"{scheme}://{rest}"


class SecretsSettings(_Section):
    """Where the master key (which encrypts secrets at rest) comes from."""

    master_key_file: FilePath | None = None
    master_key: SecretStr | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretsSettings:
        if self.master_key is not None and not self.master_key.get_secret_value().strip():
            raise Problems([(("master_key",), "is empty — set it or remove the key")])
        if self.master_key is not None and self.master_key_file is not None:
            raise ValueError(
                "master_key and master_key_file are both set — keep one "
                "(master_key_file is preferred, master_key usually is env:BASTION_MASTER_KEY)"
            )
        return self


class ServerSettings(_Section):
    """The HTTP server engine and its process-level knobs."""

    # granian (embedded) by benchmark: bench/server/RESULTS.md; uvicorn stays supported.
    engine: Literal["uvicorn", "granian"] = "granian"
    graceful_timeout: Seconds = 10.0
    backlog: Count = 2048
    access_log: bool = False


class LoggingSettings(_Section):
    """Log level and format."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Literal["json", "console"] = "json"


class SigningKeySettings(_Section):
    """Token signing keys: algorithm, scheduled rotation, publication before use."""

    algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = "ES256"
    rsa_key_size: Annotated[int, BeforeValidator(_not_bool), Field(ge=2048, le=8192)] = 3072
    # None: rotate only on `bastion signing-keys rotate`.
    rotate_every: Duration | None = None
    # A new key sits in the JWKS this long before it signs, so caches that honour
    # jwks_max_age have it before the first token signed with it arrives.
    prepublish: Duration = 900.0
    jwks_max_age: Duration = 300.0

    @model_validator(mode="after")
    def _cache_shorter_than_prepublish(self) -> SigningKeySettings:
        if self.prepublish and self.jwks_max_age > self.prepublish:
            raise ValueError(
                f"jwks_max_age ({self.jwks_max_age:g}s) is longer than prepublish "
                f"({self.prepublish:g}s) — verifiers could see a token before its key; "
                "lower jwks_max_age or raise prepublish"
            )
        if self.rotate_every is not None and self.rotate_every < 3600:
            raise ValueError(
                f"rotate_every ({self.rotate_every:g}s) is under an hour — use e.g. 30d or 90d"
            )
        return self


class TokenSettings(_Section):
    """Lifetimes of the tokens the authorization server issues, and clock leeway."""

    access_token_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=30, le=86400)] = 900.0
    max_access_token_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=30, le=86400)] = (
        86400.0
    )
    leeway: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=300)] = 30.0
    client_secret_grace: Duration = 86400.0

    @model_validator(mode="after")
    def _ttl_within_max(self) -> TokenSettings:
        if self.access_token_ttl > self.max_access_token_ttl:
            raise ValueError(
                f"access_token_ttl ({self.access_token_ttl:g}s) exceeds max_access_token_ttl "
                f"({self.max_access_token_ttl:g}s) — lower it or raise the maximum"
            )
        return self


class ApiKeySettings(_Section):
    """API keys: the recognisable format, an optional pepper, rotation grace, leak reports."""

    # Keys read bst_<environment>_<random><checksum>; the tag helps people (and secret
    # scanners) tell live keys from test keys. None: no tag.
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,9}$")] | None = None
    # Optional server-side pepper: stored digests become HMAC-SHA256(pepper, key), so a
    # stolen database alone cannot confirm a guessed key. Changing it invalidates keys.
    pepper: SecretStr | None = None
    default_grace: Duration = 86400.0
    # Shared secret authenticating POST /api-keys/leaks (HMAC-SHA256 of the body).
    leak_report_secret: SecretStr | None = None


class LoginThrottleSettings(_Section):
    """Brute-force throttling of credential checks (ratelimit/login.py): counts and seconds.

    Applied today to client authentication at the token endpoint; login and MFA
    use the same settings when they arrive.
    """

    enabled: bool = True
    free_attempts: Count = 5  # failures of one account from one address before delays
    ip_free_attempts: Count = 50  # failures from one address (any account) before delays
    stuffing_accounts: Count = 10  # distinct failing accounts from one address: IP locked
    base_delay: Duration = 1.0  # first delay; doubles with every further failure
    max_delay: Duration = 900.0
    account_free_attempts: Count = 20  # failures of one account from any address
    account_max_delay: Duration = 30.0  # bounded: an attacker cannot lock the account out
    window: Duration = 3600.0  # how long failures are remembered
    known_for: Duration = 2592000.0  # an address that succeeded skips the account-wide delay

    @model_validator(mode="after")
    def _check_delays(self) -> LoginThrottleSettings:
        problems: list[tuple[Loc, str]] = []
        for name in ("base_delay", "max_delay", "account_max_delay", "window", "known_for"):
            if getattr(self, name) <= 0:
                problems.append(((name,), "must be more than 0 seconds — e.g. 1s, 15m, 1h"))
        if not problems and self.base_delay > self.max_delay:
            problems.append(
                (
                    ("base_delay",),
                    f"{self.base_delay:g}s is longer than max_delay ({self.max_delay:g}s) — "
                    "lower base_delay or raise max_delay",
                )
            )
        if problems:
            raise Problems(problems)
        return self


class LoadSheddingSettings(_Section):
    """Adaptive concurrency limit per route's upstream (ratelimit/adaptive.py, AIMD).

    The limit of concurrent requests per route grows by one per window of
    requests answered under ``target_latency`` and shrinks by ``backoff`` when
    latency exceeds it; requests beyond the limit are shed with 503 +
    ``Retry-After`` before they reach the upstream.
    """

    enabled: bool = False
    initial_limit: Count = 20
    min_limit: Count = 1
    max_limit: Count = 1000
    target_latency: Duration = 0.5
    backoff: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, lt=1)] = 0.9

    @model_validator(mode="after")
    def _check_bounds(self) -> LoadSheddingSettings:
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise Problems(
                [
                    (
                        ("initial_limit",),
                        f"{self.initial_limit} must lie between min_limit ({self.min_limit}) "
                        f"and max_limit ({self.max_limit}) — change one of the three",
                    )
                ]
            )
        if self.target_latency <= 0:
            raise Problems([(("target_latency",), "must be more than 0 seconds — e.g. 500ms")])
        return self


class RateLimitSettings(_Section):
    """Rate limiting beyond the routes' ``limits``: per-key limits, outages, throttles."""

    # What a request's per-API-key limits do while Redis is unreachable (route limits
    # say it per limit): closed answers 503, open decides locally with this node's share.
    key_limits_fail: Literal["open", "closed"] = "closed"
    # How often each node announces itself, so the fail-open share is limit / live nodes.
    node_heartbeat: Seconds = 5.0
    login: LoginThrottleSettings = Field(default_factory=LoginThrottleSettings)
    shedding: LoadSheddingSettings = Field(default_factory=LoadSheddingSettings)


class DemoSettings(_Section):
    """The built-in demo: an echo upstream behind a public ``/demo`` route."""

    enabled: bool = False


# ---------------------------------------------------------------------------
# routes


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
        if value is None:
            return None
        if not value:
            raise ValueError(
                "is an empty list, which matches nothing — remove it to match every method"
            )
        methods: list[str] = []
        problems: list[tuple[Loc, str]] = []
        for index, method in enumerate(value):
            upper = method.upper()
            if upper not in HTTP_METHODS:
                problems.append(
                    (
                        (index,),
                        f"{show(method)} is not a method bastion routes — use "
                        f"{', '.join(HTTP_METHODS[:-1])} or {HTTP_METHODS[-1]}",
                    )
                )
            elif upper not in methods:
                methods.append(upper)
        if problems:
            raise Problems(problems)
        return methods

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


class RouteSettings(_Section):
    """One gateway route: which requests, where they go, how they are authenticated.

    Default deny: a route says ``public: true`` or lists ``auth`` methods, never
    neither and never both.
    """

    name: str
    match: RouteMatch
    upstream: str
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
    def _check_upstream(cls, value: str) -> str:
        return _http_url(value, "http://orders.internal:9000")

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


# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 9110 token characters, restricted to what header names use in practice.
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "cookie",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
)


def _scope_list(tokens: list[object], loc: Loc) -> list[str]:
    """Check a list of RFC 6749 scope tokens; raise Problems naming each bad entry."""
    scopes: list[str] = []
    problems: list[tuple[Loc, str]] = []
    for index, token in enumerate(tokens):
        if not isinstance(token, str) or not _SCOPE_TOKEN.fullmatch(token):
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


# ---------------------------------------------------------------------------
# shorthands


def _tls_shorthand(value: Any) -> Any:
    if value is False or (isinstance(value, str) and value.strip().lower() == "off"):
        return {"mode": "off"}
    if value is True:
        return {"mode": "auto"}
    if isinstance(value, str):
        return {"mode": value.strip().lower()}
    if isinstance(value, dict) and "mode" not in value and ("cert" in value or "key" in value):
        return {**value, "mode": "files"}
    return value


def _url_shorthand(value: Any) -> Any:
    return {"url": value} if isinstance(value, str) else value


def _demo_shorthand(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


SHORTHANDS: dict[str, Callable[[Any], Any]] = {
    "tls": _tls_shorthand,
    "storage": _url_shorthand,
    "shared": _url_shorthand,
    "demo": _demo_shorthand,
}


def expand_shorthand(key: str, value: Any) -> Any:
    """The long (mapping) form of a top-level section written as a shorthand.

    ``tls: off`` -> ``{mode: off}``, ``storage: postgresql://…`` -> ``{url: …}``;
    anything else is returned unchanged.
    """
    expand = SHORTHANDS.get(key)
    return expand(value) if expand is not None else value


# ---------------------------------------------------------------------------
# the whole configuration


class Settings(BaseModel):
    """The whole configuration of one bastion process (validated, frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: Literal["development", "production"] = "development"
    data_dir: FilePath = Path(".bastion")
    listen: ListenSettings = Field(default_factory=ListenSettings)
    issuer: str | None = None
    tls: TLSSettings = Field(default_factory=TLSSettings)
    trusted_proxies: list[Network] = Field(default_factory=list)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    shared: SharedSettings = Field(default_factory=SharedSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    node_id: str | None = None
    routes: list[RouteSettings] = Field(default_factory=list)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    signing_keys: SigningKeySettings = Field(default_factory=SigningKeySettings)
    tokens: TokenSettings = Field(default_factory=TokenSettings)
    api_keys: ApiKeySettings = Field(default_factory=ApiKeySettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key, value in list(data.items()):
            if value is None and key in _SECTIONS:
                del data[key]  # an empty section ("tls:" with nothing below) means defaults
            elif isinstance(key, str):
                data[key] = expand_shorthand(key, value)
        return data

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        # One address, or a comma-separated list (handy in BASTION_TRUSTED_PROXIES).
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str | None) -> str | None:
        if value is None:
            return None
        issuer = _http_url(value, "https://auth.example.com")
        parts = urlsplit(issuer)
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError(
                f"{show(value)} uses http — use https (http is only allowed for localhost "
                "in development)"
            )
        return issuer

    @field_validator("node_id")
    @classmethod
    def _check_node_id(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(c.isspace() for c in value)):
            raise ValueError(f"{show(value)} is not a node id — use one word, e.g. node-1")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        problems: list[tuple[Loc, str]] = []
        if self.tls.mode == "off" and not self.trusted_proxies:
            problems.append(
                (
                    ("tls",),
                    "off needs trusted_proxies — bastion only serves plain HTTP behind a "
                    "TLS-terminating proxy; list that proxy's address in trusted_proxies, "
                    "or use tls mode auto or files",
                )
            )
        problems.extend(_route_conflicts(self.routes))
        if problems:
            raise Problems(problems)
        return self

    @property
    def issuer_url(self) -> str:
        """The explicit issuer, else ``https://localhost:{port}`` (``http`` when TLS is off)."""
        if self.issuer is not None:
            return self.issuer
        scheme = "http" if self.tls.mode == "off" else "https"
        default_port = 80 if scheme == "http" else 443
        port = "" if self.listen.port == default_port else f":{self.listen.port}"
        return f"{scheme}://localhost{port}"

    @property
    def storage_url(self) -> str:
        """The database URL: the configured one, or SQLite at ``{data_dir}/bastion.db``."""
        if self.storage.url is not None:
            return self.storage.url
        return f"sqlite:///{(self.data_dir / 'bastion.db').absolute()}"

    @property
    def master_key_path(self) -> Path:
        """The master key file: ``secrets.master_key_file`` or ``{data_dir}/master.key``."""
        return self.secrets.master_key_file or self.data_dir / "master.key"

    @property
    def master_key_configured(self) -> bool:
        """Whether the master key is configured (not the generated development default)."""
        return self.secrets.master_key is not None or self.secrets.master_key_file is not None


_SECTIONS = frozenset(
    name
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
)


def _route_conflicts(routes: list[RouteSettings]) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    names: dict[str, int] = {}
    for index, route in enumerate(routes):
        if route.name in names:
            problems.append(
                (
                    ("routes", index, "name"),
                    f"{show(route.name)} is already the name of routes[{names[route.name]}] — "
                    "route names must be unique",
                )
            )
        else:
            names[route.name] = index
        for earlier in range(index):
            other = routes[earlier]
            if route.match.overlaps(other.match):
                where = dotted(("routes", earlier))
                problems.append(
                    (
                        ("routes", index),
                        f"takes the same requests as {where} ({other.name}) — same host, path "
                        "and methods; change one match or merge the routes",
                    )
                )
                break
    return problems
