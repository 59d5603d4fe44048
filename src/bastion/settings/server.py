"""The process itself: ``listen``, ``tls``, ``storage``, ``shared``, ``secrets``, ``server``,
``logging``, ``demo`` and ``admin`` (where the admin API is served and who may reach it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from bastion.settings._values import Loc, Problems, show
from bastion.settings.fields import (
    Count,
    FilePath,
    Network,
    Port,
    Seconds,
    _lower,
    _not_bool,
    _Section,
    _unreadable,
)

STORAGE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+asyncpg")
SHARED_SCHEMES = ("memory", "redis", "rediss", "unix")


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
        files = {"cert": self.cert, "key": self.key}
        if self.cert is None or self.key is None:
            missing = [name for name, path in files.items() if path is None]
            problems.append(
                (
                    (),
                    f"tls.{' and tls.'.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                    "missing — a certificate (PEM) and its private key go together; set both "
                    "tls.cert and tls.key",
                )
            )
        for name, path in files.items():
            if path is not None and (problem := _unreadable(path)):
                problems.append(((name,), problem))
        if problems:
            raise Problems(problems)
        return self


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
