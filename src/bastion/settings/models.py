"""The typed configuration of one bastion process: every key, its default and its rules.

Every model forbids unknown keys and is frozen once loaded. Validators raise
``ValueError`` (or :class:`~bastion.settings._values.Problems` for several
problems at once) with a message that shows the bad value — secrets redacted —
and the fix; :func:`bastion.settings.load_settings` turns them into
:class:`~bastion.settings.SettingsError` lines that name the key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Final, Literal
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

from bastion.protocol.rfc6749.scope import is_scope_token
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


_DURATION = re.compile(r"^\s*([0-9]{1,30}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}

MAX_DURATION: Final = 100 * 365 * 86400.0
"""The longest duration bastion accepts anywhere (100 years): a moment that far away
is still a representable date, and a bigger number is a typo, never a policy."""


class DurationError(ValueError):
    """A value that is not a usable duration.

    ``reason`` is the message without the value ("too long — …"); ``too_long``
    tells a duration over :data:`MAX_DURATION` from one that is not a duration at all.
    """

    def __init__(self, value: object, reason: str, *, too_long: bool = False) -> None:
        self.reason = reason
        self.too_long = too_long
        super().__init__(f"{show(value)} is {reason}")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "90d", "12h", "15m", "30s", "250ms", "2w".

    The one home of duration parsing (configuration keys and CLI flags alike).
    Raises :class:`DurationError` (a ValueError) quoting the value and the
    expected form: not a duration, negative, not finite, or longer than
    :data:`MAX_DURATION`.
    """
    value = _not_bool(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise DurationError(value, "not a duration — use seconds or e.g. 30s, 15m, 12h, 90d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    elif isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise DurationError(value, "not a duration — give a number of seconds >= 0")
    else:
        raise DurationError(value, "not a duration — use seconds or e.g. 30s, 15m, 12h, 90d")
    if seconds > MAX_DURATION:
        raise DurationError(value, "too long — at most 100 years (36500d)", too_long=True)
    return seconds


def _duration(value: object) -> object:
    """Accept seconds as a number, or a string like "90d", "12h", "15m", "30s", "250ms"."""
    if value is None or not isinstance(value, str | int | float):
        return value  # None where optional; other types get pydantic's own message
    return parse_duration(value)


Port = Annotated[int, PlainValidator(_port)]
FilePath = Annotated[Path, BeforeValidator(_path)]
Network = Annotated[IPv4Network | IPv6Network, PlainValidator(_network)]
Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]

_BYTE_SIZE = re.compile(r"^\s*([0-9]+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_BYTE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def _byte_size(value: object) -> int:
    """Accept bytes, or a string like "512KB", "10MB", "1MiB" (KB = 1000, KiB = 1024)."""
    value = _not_bool(value)
    if isinstance(value, str):
        match = _BYTE_SIZE.match(value)
        if match is None:
            raise ValueError(
                f"{show(value)} is not a size — use bytes or e.g. 512KB, 10MB, 1MiB, 1GB"
            )
        value = int(match.group(1)) * _BYTE_UNITS[(match.group(2) or "b").lower()]
    if not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{show(value)} is not a size — use a positive number of bytes or e.g. 10MB"
        )
    return value


ByteSize = Annotated[int, PlainValidator(_byte_size)]


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
    # PEM CA bundle: when set, clients are asked for a certificate (verified against it);
    # routes with auth mtls need it.
    client_ca: FilePath | None = None
    # Seconds between checks of the cert/key files' mtimes (renewed certificates are
    # loaded without a restart); 0 = only on SIGHUP.
    reload_interval: Annotated[float, BeforeValidator(_not_bool), Field(ge=0)] = 60.0

    @field_validator("min_version", mode="before")
    @classmethod
    def _version_text(cls, value: object) -> object:
        # YAML reads `min_version: 1.3` as a float.
        if isinstance(value, float) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _check_files(self) -> TLSSettings:
        if self.client_ca is not None and (problem := _unreadable(self.client_ca)):
            raise Problems([(("client_ca",), problem)])
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
        url = f"{scheme}://{rest}"
        if scheme != "memory":
            # Every node's limits are checked by the native core's own Redis connection.
            from bastion.storage.shared.resp import native_refusal  # imports redis-py

            why = native_refusal(url)
            if why is not None:
                raise ValueError(f"{show(value)}: {why}")
        return url


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

    # The public port is always the native front (bastion._native): it serves gateway
    # routes itself; the rest reaches the Python app over a private Unix socket. `native`
    # is the only engine (uvicorn and granian no longer serve the public port); the key
    # stays so that files naming it keep loading.
    engine: Literal["native"] = "native"
    # Threads of the native front, one single-threaded runtime each; 0 = one per core.
    threads: Annotated[int, BeforeValidator(_not_bool), Field(ge=0, le=1024)] = 0
    graceful_timeout: Seconds = 10.0
    backlog: Count = 2048
    access_log: bool = False

    @field_validator("engine", mode="before")
    @classmethod
    def _retired_engine(cls, value: object) -> object:
        if value in ("uvicorn", "granian"):
            raise ValueError(
                f"{value} no longer serves the public port — the native front does "
                "(remove server.engine, or set it to native)"
            )
        return value


class LoggingSettings(_Section):
    """Log level and format."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = "info"
    format: Literal["json", "console"] = "json"


class SigningKeySettings(_Section):
    """Token signing keys: algorithm, scheduled rotation, publication before use."""

    algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = "ES256"
    # At most 4096 bits: the native gateway signs the identity assertion with ring, whose
    # RSA signing keys are 2048 to 4096 bits (crypto.keys.MAX_RSA_BITS).
    rsa_key_size: Annotated[int, BeforeValidator(_not_bool), Field(ge=2048, le=4096)] = 3072
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
    # Shared secret authenticating POST /api-keys/leaks (HMAC-SHA256 of timestamp + body);
    # at least LEAK_REPORT_SECRET_MIN characters: it is all that stands between anyone and
    # revoking every key they can guess.
    leak_report_secret: SecretStr | None = None
    # Most RFC 8693 exchanges of one key for a token (a token lives 5 minutes, so a
    # service needs about one per 5 minutes); more are 429 rate_limited.
    exchange_rate: str = "30/minute"

    @field_validator("exchange_rate")
    @classmethod
    def _check_exchange_rate(cls, value: str) -> str:
        # Limit.parse raises ValueError naming the bad text and the expected form.
        Limit.parse(value)
        return value

    @field_validator("leak_report_secret")
    @classmethod
    def _long_leak_report_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < LEAK_REPORT_SECRET_MIN:
            raise ValueError(
                f"must be at least {LEAK_REPORT_SECRET_MIN} characters, not "
                f"{len(value.get_secret_value())} — generate one with `openssl rand -hex 32`"
            )
        return value


#: Shortest accepted ``api_keys.leak_report_secret``.
LEAK_REPORT_SECRET_MIN = 32


# Algorithms accepted from trusted external issuers: asymmetric only (RFC 8725 §3.1/§3.2:
# no "none", and no HS* — a shared secret with an IdP would let it mint tokens for anyone).
ExternalAlgorithm = Literal["ES256", "RS256", "PS256", "EdDSA"]
_DEFAULT_EXTERNAL_ALGS: list[ExternalAlgorithm] = ["RS256", "ES256"]


class TrustedIssuerSettings(_Section):
    """An external OAuth/OIDC issuer whose JWT access tokens the ``jwt`` method accepts.

    ``jwks_uri`` is discovered from the issuer's metadata
    (``/.well-known/openid-configuration``, then RFC 8414
    ``/.well-known/oauth-authorization-server``) when not given. ``audiences`` are
    the ``aud`` values accepted from it on routes that set no ``jwt.audience``.
    """

    issuer: str
    jwks_uri: str | None = None
    audiences: list[str]
    algorithms: list[ExternalAlgorithm] = Field(default_factory=lambda: _DEFAULT_EXTERNAL_ALGS[:])
    # RFC 9068 access tokens say typ "at+jwt"; null accepts any typ (IdPs that send "JWT").
    typ: str | None = "at+jwt"
    cache_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=86400)] = 600.0
    min_refresh_interval: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=3600)] = 30.0
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 5.0
    ca_file: FilePath | None = None

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return _issuer_url(value, "https://idp.example.com")

    @field_validator("jwks_uri")
    @classmethod
    def _check_jwks_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _issuer_url(value, "https://idp.example.com/.well-known/jwks.json")

    @field_validator("audiences")
    @classmethod
    def _check_audiences(cls, value: list[str]) -> list[str]:
        if not value or not all(isinstance(a, str) and a.strip() for a in value):
            raise ValueError(
                "needs at least one non-empty audience — the aud your API's tokens carry, "
                "e.g. [https://api.example.com]"
            )
        return value

    @field_validator("algorithms", mode="before")
    @classmethod
    def _check_algorithms(cls, value: object) -> object:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str) and (
                    item.lower() == "none" or item.upper().startswith("HS")
                ):
                    raise ValueError(
                        f"{show(item)} is not allowed — only asymmetric algorithms are "
                        "accepted from external issuers: ES256, RS256, PS256, EdDSA"
                    )
            if not value:
                raise ValueError("is empty — list at least one of ES256, RS256, PS256, EdDSA")
        return value

    @model_validator(mode="after")
    def _check_ca_file(self) -> TrustedIssuerSettings:
        if self.ca_file is not None and (problem := _unreadable(self.ca_file)):
            raise Problems([(("ca_file",), problem)])
        return self


def _issuer_url(value: str, example: str) -> str:
    url = _http_url(value, example)
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{show(value)} uses http — use https (http only for localhost)")
    return url


class IntrospectionSettings(_Section):
    """The RFC 7662 endpoint the ``introspection`` method asks about opaque tokens."""

    endpoint: str
    client_id: str
    client_secret: SecretStr
    # Positive answers are cached until min(exp, now + cache_ttl); negative ones briefly.
    cache_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=3600)] = 60.0
    negative_cache_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=300)] = 5.0
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 3.0
    # When set, an active token must carry this aud.
    audience: str | None = None
    ca_file: FilePath | None = None

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _issuer_url(value, "https://idp.example.com/oauth2/introspect")

    @model_validator(mode="after")
    def _check_secret(self) -> IntrospectionSettings:
        if not self.client_secret.get_secret_value().strip():
            raise Problems([(("client_secret",), "is empty — use env:NAME")])
        if self.ca_file is not None and (problem := _unreadable(self.ca_file)):
            raise Problems([(("ca_file",), problem)])
        return self


class AssertionSettings(_Section):
    """The signed identity assertion (a JWT) bastion sends upstream with each request."""

    enabled: bool = False
    ttl: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=60)] = 30.0
    header: str = "X-Bastion-Assertion"

    @field_validator("header")
    @classmethod
    def _check_header(cls, value: str) -> str:
        return _identity_header(value)


def _identity_header(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise ValueError(
            f"{show(value)} is not a header name — use letters, digits and '-', "
            "e.g. X-Bastion-Subject"
        )
    lower = value.lower()
    if (
        lower in _RESERVED_HEADERS
        or lower == "authorization"
        or lower.startswith(("x-forwarded-", "proxy-"))
    ):
        raise ValueError(
            f"{show(value)} is a header the HTTP layer or the gateway controls — "
            "use a header of your own, e.g. X-Bastion-Subject"
        )
    return value


class IdentityHeaderSettings(_Section):
    """What the ``mutate`` step sends upstream: header names, extra headers to strip, assertion.

    Every client-sent header with one of these names (and every ``X-Bastion-*``)
    is stripped before bastion adds its own.
    """

    subject: str = "X-Bastion-Subject"
    client: str = "X-Bastion-Client"
    scopes: str = "X-Bastion-Scopes"
    key_id: str = "X-Bastion-Key-Id"
    request_id: str = "X-Bastion-Request-Id"
    # Added to the built-in list of commonly trusted identity headers (X-User-Id, …).
    strip: list[str] = Field(default_factory=list)
    assertion: AssertionSettings = Field(default_factory=AssertionSettings)

    @field_validator("subject", "client", "scopes", "key_id", "request_id")
    @classmethod
    def _check_names(cls, value: str) -> str:
        return _identity_header(value)

    @field_validator("strip")
    @classmethod
    def _check_strip(cls, value: list[str]) -> list[str]:
        problems: list[tuple[Loc, str]] = [
            ((index,), f"{show(name)} is not a header name — use letters, digits and '-'")
            for index, name in enumerate(value)
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name)
        ]
        if problems:
            raise Problems(problems)
        return value

    @model_validator(mode="after")
    def _distinct(self) -> IdentityHeaderSettings:
        names = [self.subject, self.client, self.scopes, self.key_id, self.request_id]
        if self.assertion.enabled:
            names.append(self.assertion.header)
        lowered = [n.lower() for n in names]
        if len(set(lowered)) != len(lowered):
            raise ValueError(
                "two identity headers share a name — give subject, client, scopes, key_id, "
                "request_id and assertion.header distinct names"
            )
        return self


class ForwardAuthSettings(_Section):
    """The forward-auth endpoint ``/auth/verify`` (answered by the native core).

    ``headers`` names the one header family the proxy in front says the original
    request in: ``nginx`` (``X-Original-Method`` / ``X-Original-URI``, set by the
    shipped nginx example) or ``forwarded`` (``X-Forwarded-Method`` /
    ``X-Forwarded-Uri``: Caddy ``forward_auth``, Traefik ``forwardAuth``). A
    decision request that carries the other family as well is refused (400):
    the proxies pass the client's own headers through, so the other family is
    what a client would forge.
    """

    headers: Literal["nginx", "forwarded"] = "nginx"


class RequestLimitSettings(_Section):
    """Bounds on every gateway request: body size (default for routes) and header size."""

    max_body: ByteSize = 10 * 1000**2
    max_header_bytes: ByteSize = 32 * 1024
    max_headers: Annotated[int, BeforeValidator(_not_bool), Field(ge=16, le=1000)] = 100


def _retention(value: object) -> object:
    # "none" / "forever" (or null): keep every audit record.
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "forever")):
        return None
    seconds = _duration(value)
    if isinstance(seconds, int | float) and seconds < 86400:
        raise ValueError(
            f"{show(value)} is shorter than a day — use e.g. 90d or 365d, or none to keep "
            "every record"
        )
    return seconds


class AuditSettings(_Section):
    """The audit log: retention, JSON-lines copy, and the writer's batching."""

    # Records older than this are pruned (chains stay verifiable through checkpoints).
    retention: Annotated[float | None, BeforeValidator(_retention)] = 365 * 86400.0
    file: FilePath | None = None  # also append every event here as JSON lines
    batch_size: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=10_000)] = 500
    flush_interval: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 1.0
    max_queue: Annotated[int, BeforeValidator(_not_bool), Field(ge=1000)] = 100_000
    checkpoint_interval: Annotated[float, BeforeValidator(_duration), Field(ge=10)] = 300.0


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
    """Adaptive concurrency limit per route's upstream (gateway/shedding.py, AIMD).

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


class RiskTighteningSettings(_Section):
    """Tighter limits for what the anomaly detectors flag (ratelimit/risk.py).

    When an alert names an address, API key, subject or client (brute force,
    credential stuffing, IP failures, denial spikes, a new network), every rate
    limit applying to its requests is divided by ``factor`` for ``duration``.
    """

    enabled: bool = True
    factor: Annotated[int, BeforeValidator(_not_bool), Field(ge=2, le=1000)] = 4
    duration: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=7 * 86400)] = 900.0


class RateLimitSettings(_Section):
    """Rate limiting beyond the routes' ``limits``: per-key limits, outages, throttles."""

    # What a request's per-API-key limits do while Redis is unreachable (route limits
    # say it per limit): closed answers 503, open decides locally with this node's share.
    key_limits_fail: Literal["open", "closed"] = "closed"
    # How often each node announces itself, so the fail-open share is limit / live nodes.
    node_heartbeat: Seconds = 5.0
    login: LoginThrottleSettings = Field(default_factory=LoginThrottleSettings)
    shedding: LoadSheddingSettings = Field(default_factory=LoadSheddingSettings)
    risk: RiskTighteningSettings = Field(default_factory=RiskTighteningSettings)


class DemoSettings(_Section):
    """The built-in demo: an echo upstream behind a public ``/demo`` route."""

    enabled: bool = False


class _SideListenSettings(_Section):
    """A listener of its own beside the main port (loopback unless told otherwise)."""

    host: str = "127.0.0.1"
    port: Port

    @field_validator("host")
    @classmethod
    def _check_host(cls, value: str) -> str:
        return ListenSettings._check_host(value)


class MetricsListenSettings(_SideListenSettings):
    """A separate plain-HTTP listener that serves only ``/metrics``."""


class MetricsSettings(_Section):
    """Prometheus ``/metrics``: on the main port (default) or only on a listener of its own.

    Without ``token``, the main port answers ``/metrics`` only to loopback clients
    (not through a trusted proxy) and a separate ``listen`` answers everyone who can
    reach it; with ``token``, every scrape must send ``Authorization: Bearer <token>``.
    """

    enabled: bool = True
    listen: MetricsListenSettings | None = None
    token: SecretStr | None = None

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if len(text) < 16 or any(c.isspace() or not c.isprintable() for c in text):
            raise ValueError(
                "is shorter than 16 characters or contains spaces — use a long random value, "
                "e.g. the output of `openssl rand -hex 32`, via env:BASTION_METRICS_TOKEN"
            )
        return value


class AdminListenSettings(_SideListenSettings):
    """A separate listener serving only the admin API (``/admin/api/*``)."""


class AdminSettings(_Section):
    """Where the admin API (``/admin/api/v1``) is served and who may reach it.

    ``listen``: serve it only on a listener of its own (with the main port's TLS;
    the main port then answers 404 under ``/admin/api``). ``allow_from``: networks
    whose clients may call it (the client address as the gateway resolves it,
    ``X-Forwarded-For`` only from ``trusted_proxies``); others get 403
    ``admin_ip_forbidden``. Empty (default): any address, the token decides.
    """

    listen: AdminListenSettings | None = None
    allow_from: list[Network] = Field(default_factory=list)

    @field_validator("allow_from", mode="before")
    @classmethod
    def _network_list(cls, value: object) -> object:
        # One network, or a comma-separated list (handy in BASTION_ADMIN__ALLOW_FROM).
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class TracingSettings(_Section):
    """Optional OpenTelemetry tracing of gateway requests, exported over OTLP/HTTP.

    Needs ``pip install 'bastion[tracing]'``; see docs/metrics.md, "Tracing".
    """

    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "bastion"
    sample_ratio: Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=1)] = 1.0

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _http_url(value, "http://127.0.0.1:4318/v1/traces")

    @field_validator("service_name")
    @classmethod
    def _check_service_name(cls, value: str) -> str:
        if not value or len(value) > 100 or not value.isprintable():
            raise ValueError(f"{show(value)} is not a service name — use e.g. bastion")
        return value

    @model_validator(mode="after")
    def _check_installed(self) -> TracingSettings:
        from bastion.observability.tracing import INSTALL_HINT, tracing_installed

        if self.enabled and not tracing_installed():
            raise Problems(
                [
                    (
                        ("enabled",),
                        f"true needs OpenTelemetry — run `{INSTALL_HINT}`, or set "
                        "tracing.enabled to false",
                    )
                ]
            )
        return self


# ---------------------------------------------------------------------------
# alerts: detectors over the audit stream, webhooks


PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
_EVENT_PATTERN = re.compile(r"[a-z0-9_*]+(?:\.[a-z0-9_*]+)*")


class BruteForceSettings(_Section):
    """One account failing ``failures`` times within ``window``."""

    enabled: bool = True
    failures: Count = 10
    window: PositiveDuration = 300.0


class IpFailuresSettings(_Section):
    """One IP failing ``failures`` times within ``window`` (any account, gateway 401s)."""

    enabled: bool = True
    failures: Count = 100
    window: PositiveDuration = 600.0


class CredentialStuffingSettings(_Section):
    """One IP failing on ``accounts`` distinct accounts within ``window``."""

    enabled: bool = True
    accounts: Annotated[int, BeforeValidator(_not_bool), Field(ge=2)] = 20
    window: PositiveDuration = 600.0


SpikeDimension = Literal["route", "key"]
_SPIKE_DIMENSIONS: tuple[SpikeDimension, ...] = ("route", "key")


class DenialSpikeSettings(_Section):
    """401/403/429 spikes per route and per key: EWMA + z-score over per-interval counts."""

    enabled: bool = True
    per: list[SpikeDimension] = Field(default_factory=lambda: list(_SPIKE_DIMENSIONS))
    interval: PositiveDuration = 60.0
    alpha: Annotated[float, BeforeValidator(_not_bool), Field(gt=0, le=1)] = 0.1
    z: Annotated[float, BeforeValidator(_not_bool), Field(gt=0)] = 4.0
    min_count: Count = 20
    statuses: list[Annotated[int, BeforeValidator(_not_bool), Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [401, 403, 429]
    )


class NewNetworkSettings(_Section):
    """A key or subject used from a network it was not seen in before."""

    enabled: bool = True
    ipv4_prefix: Annotated[int, BeforeValidator(_not_bool), Field(ge=8, le=32)] = 16
    ipv6_prefix: Annotated[int, BeforeValidator(_not_bool), Field(ge=16, le=128)] = 48
    max_networks: Count = 8


class TokenReuseSettings(_Section):
    """Refresh-token and authorization-code reuse (always an alert)."""

    enabled: bool = True


class DetectorSettings(_Section):
    """The detectors and their thresholds; ``max_tracked`` bounds each detector's memory."""

    max_tracked: Count = 100_000
    brute_force: BruteForceSettings = Field(default_factory=BruteForceSettings)
    ip_failures: IpFailuresSettings = Field(default_factory=IpFailuresSettings)
    credential_stuffing: CredentialStuffingSettings = Field(
        default_factory=CredentialStuffingSettings
    )
    denial_spike: DenialSpikeSettings = Field(default_factory=DenialSpikeSettings)
    new_network: NewNetworkSettings = Field(default_factory=NewNetworkSettings)
    token_reuse: TokenReuseSettings = Field(default_factory=TokenReuseSettings)


class WebhookSettings(_Section):
    """One webhook receiver: URL, HMAC signing secret, and which event types it gets."""

    url: str
    secret: SecretStr
    name: str = ""
    # Event types or patterns (token.*, *); alert.raised carries the alerts.
    events: list[str] = Field(default_factory=lambda: ["alert.raised"])

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        example = "https://hooks.example.com/bastion"
        try:
            parts = urlsplit(value)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"{show(value)} is not an absolute http(s) URL — use e.g. {example}")
        if "@" in parts.netloc:
            raise ValueError(
                "contains a user name or password — remove it; deliveries are authenticated "
                "by their signature"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError(
                "is shorter than 16 characters — use a random secret, e.g. the output of "
                "`openssl rand -hex 32`, preferably as env:NAME"
            )
        return value

    @field_validator("events")
    @classmethod
    def _check_events(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("is empty — list event types, e.g. [alert.raised], or remove it")
        problems: list[tuple[Loc, str]] = []
        for index, pattern in enumerate(value):
            if not isinstance(pattern, str) or not _EVENT_PATTERN.fullmatch(pattern):
                problems.append(
                    (
                        (index,),
                        f"{show(pattern)} is not an event type — use e.g. alert.raised, "
                        "token.* or *",
                    )
                )
        if problems:
            raise Problems(problems)
        return value


class WebhookDeliverySettings(_Section):
    """How webhooks are delivered: retries with exponential backoff, timeouts, dead letters."""

    max_attempts: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=20)] = 6
    backoff: PositiveDuration = 1.0
    max_backoff: PositiveDuration = 300.0
    timeout: PositiveDuration = 5.0
    max_queue: Count = 10_000
    workers: Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=32)] = 4
    # JSON lines of deliveries that failed for good; default {data_dir}/webhook-dead-letters.jsonl
    dead_letter_file: FilePath | None = None

    @model_validator(mode="after")
    def _backoff_order(self) -> WebhookDeliverySettings:
        if self.backoff > self.max_backoff:
            raise ValueError(
                f"backoff ({self.backoff:g}s) exceeds max_backoff ({self.max_backoff:g}s) — "
                "lower backoff or raise max_backoff"
            )
        return self


class AlertSettings(_Section):
    """Anomaly detectors over the audit events, alert deduplication, webhook delivery."""

    enabled: bool = True
    # Alerts with the same type and key within this window are folded into one.
    dedup_window: PositiveDuration = 900.0
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    delivery: WebhookDeliverySettings = Field(default_factory=WebhookDeliverySettings)


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
        if value is None:
            return None
        if not value:
            raise ValueError("is empty — remove it to allow the route's methods")
        methods: list[str] = []
        for index, method in enumerate(value):
            upper = method.upper()
            if upper not in HTTP_METHODS or upper == "OPTIONS":
                raise Problems(
                    [
                        (
                            (index,),
                            f"{show(method)} is not a method a page can ask for — use "
                            f"{', '.join(HTTP_METHODS[:-2])} or {HTTP_METHODS[-2]}",
                        )
                    ]
                )
            if upper not in methods:
                methods.append(upper)
        return methods


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
        tls_keys = [
            k
            for k in ("upstream_ca", "upstream_client_cert", "upstream_client_key")
            if getattr(self, k) is not None
        ]
        if tls_keys and not any(u.startswith("https://") for u in self.upstreams):
            raise ValueError(
                f"{tls_keys[0]} is only used for https upstreams — use an https:// upstream "
                f"URL or remove {tls_keys[0]}"
            )
        for key in tls_keys:
            if problem := _unreadable(getattr(self, key)):
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


def _metrics_shorthand(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


SHORTHANDS: dict[str, Callable[[Any], Any]] = {
    "tls": _tls_shorthand,
    "storage": _url_shorthand,
    "shared": _url_shorthand,
    "demo": _demo_shorthand,
    "metrics": _metrics_shorthand,
    "tracing": _metrics_shorthand,
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
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    trusted_issuers: list[TrustedIssuerSettings] = Field(default_factory=list)
    introspection: IntrospectionSettings | None = None
    identity_headers: IdentityHeaderSettings = Field(default_factory=IdentityHeaderSettings)
    request_limits: RequestLimitSettings = Field(default_factory=RequestLimitSettings)
    forward_auth: ForwardAuthSettings = Field(default_factory=ForwardAuthSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
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

    def _metrics_port(self) -> tuple[int, ...]:
        return (self.metrics.listen.port,) if self.metrics.listen is not None else ()

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
        if self.metrics.listen is not None and self.metrics.listen.port == self.listen.port:
            problems.append(
                (
                    ("metrics", "listen", "port"),
                    f"{self.metrics.listen.port} is also listen.port — the metrics listener "
                    "needs a port of its own (e.g. 9464), or remove metrics.listen to serve "
                    "/metrics on the main port",
                )
            )
        admin = self.admin.listen
        if admin is not None and admin.port in {self.listen.port, *self._metrics_port()}:
            problems.append(
                (
                    ("admin", "listen", "port"),
                    f"{admin.port} is already used by listen.port or metrics.listen.port — the "
                    "admin listener needs a port of its own (e.g. 9443), or remove admin.listen "
                    "to serve the admin API on the main port",
                )
            )
        problems.extend(_auth_references(self))
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


def _auth_references(settings: Settings) -> list[tuple[Loc, str]]:
    """Routes' jwt issuers must be configured; introspection and mtls need their settings."""
    problems: list[tuple[Loc, str]] = []
    known = {issuer.issuer for issuer in settings.trusted_issuers}
    seen: set[str] = set()
    for index, issuer in enumerate(settings.trusted_issuers):
        if issuer.issuer in seen:
            problems.append(
                (("trusted_issuers", index, "issuer"), "is listed twice — keep one entry")
            )
        seen.add(issuer.issuer)
        if issuer.issuer == settings.issuer_url:
            # bastion's own tokens are never dispatched to a trusted issuer (their iss is
            # bastion's): such an entry would verify nothing, and a route naming it would
            # silently refuse bastion's tokens.
            problems.append(
                (
                    ("trusted_issuers", index, "issuer"),
                    "is bastion's own issuer_url — remove this entry and name self in a "
                    "route's jwt.issuers to accept bastion's own tokens",
                )
            )
    for index, route in enumerate(settings.routes):
        if route.jwt is not None:
            for position, name in enumerate(route.jwt.issuers):
                if name != "self" and name == settings.issuer_url:
                    problems.append(
                        (
                            ("routes", index, "jwt", "issuers", position),
                            f"{show(name)} is bastion's own issuer_url — name self for "
                            "bastion's own tokens",
                        )
                    )
                elif name != "self" and name not in known:
                    problems.append(
                        (
                            ("routes", index, "jwt", "issuers", position),
                            f"{show(name)} is not in trusted_issuers — add it there, or use "
                            "self for bastion's own tokens",
                        )
                    )
        if "session" in route.auth:
            problems.append(
                (
                    ("routes", index, "auth", route.auth.index("session")),
                    "session is not available in this version (browser sessions arrive with "
                    "the login and MFA work) — use api_key, jwt, introspection or mtls",
                )
            )
        if "mtls" in route.auth and settings.tls.mode == "off":
            problems.append(
                (
                    ("routes", index, "auth"),
                    "lists mtls, which needs bastion to terminate TLS — use tls mode auto or "
                    "files with tls.client_ca",
                )
            )
        elif "mtls" in route.auth and settings.tls.client_ca is None:
            problems.append(
                (
                    ("routes", index, "auth"),
                    "lists mtls but no client certificates are requested — set tls.client_ca "
                    "to the PEM bundle of the CA that issues client certificates",
                )
            )
        if (
            settings.identity_headers.assertion.enabled
            and isinstance(route.upstream, list)
            and route.assertion_audience is None
            and not route.public
        ):
            problems.append(
                (
                    ("routes", index, "assertion_audience"),
                    "is required when the upstream lists several targets and the identity "
                    "assertion is on — set the aud its targets check, e.g. "
                    "https://orders.internal",
                )
            )
        if "introspection" in route.auth and settings.introspection is None:
            problems.append(
                (
                    ("routes", index, "auth"),
                    "lists introspection but no introspection endpoint is configured — add "
                    "introspection: {endpoint, client_id, client_secret}",
                )
            )
    return problems
