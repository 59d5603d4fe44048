"""The whole configuration of one bastion process: :class:`Settings`, its top-level
shorthands (``tls: off``, ``storage: postgresql://…``) and the checks across sections.

Every model forbids unknown keys and is frozen once loaded. Validators raise
``ValueError`` (or :class:`~bastion.settings._values.Problems` for several
problems at once) with a message that shows the bad value — secrets redacted —
and the fix; :func:`bastion.settings.load_settings` turns them into
:class:`~bastion.settings.SettingsError` lines that name the key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.settings._values import Loc, Problems, dotted, show
from bastion.settings.alerts import AlertSettings
from bastion.settings.apikeys import ApiKeySettings
from bastion.settings.fields import LOOPBACK_HOSTS, FilePath, Network, _http_url
from bastion.settings.gateway import (
    ForwardAuthSettings,
    IdentityHeaderSettings,
    RequestLimitSettings,
)
from bastion.settings.limits import RateLimitSettings
from bastion.settings.monitoring import AuditSettings, MetricsSettings, TracingSettings
from bastion.settings.oauth import (
    IntrospectionSettings,
    SigningKeySettings,
    TokenSettings,
    TrustedIssuerSettings,
)
from bastion.settings.routes import RouteSettings
from bastion.settings.server import (
    AdminSettings,
    DemoSettings,
    ListenSettings,
    LoggingSettings,
    SecretsSettings,
    ServerSettings,
    SharedSettings,
    StorageSettings,
    TLSSettings,
)
from bastion.settings.sessions import SessionSettings
from bastion.settings.users import UserSettings


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
    users: UserSettings = Field(default_factory=UserSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)

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
        if route.auth == ["session"] and route.scopes:
            # A browser session carries no scopes: every request would be a 403.
            problems.append(
                (
                    ("routes", index, "scopes"),
                    "a route accepting only session cannot require scopes (browser sessions "
                    "carry none) — remove scopes and require roles instead",
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
