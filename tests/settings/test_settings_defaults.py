"""Defaults: no file, no variables — a development configuration that announces itself."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

import pytest
from pydantic import ValidationError

from bastion.settings import (
    RouteMatch,
    RouteSettings,
    Settings,
    development_defaults,
    load_settings,
    production_problems,
)


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(None, {})
    assert settings == Settings()
    assert settings.env == "development"
    assert settings.data_dir == Path(".bastion")
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8443)
    assert settings.issuer is None
    assert settings.issuer_url == "https://localhost:8443"
    assert settings.tls.mode == "auto"
    assert (settings.tls.cert, settings.tls.key, settings.tls.min_version) == (None, None, "1.2")
    assert settings.trusted_proxies == []
    assert settings.storage.url is None
    assert settings.storage.pool_size == 10
    assert settings.storage_url == f"sqlite:///{Path('.bastion/bastion.db').absolute()}"
    assert settings.shared.url == "memory://"
    assert settings.shared.key_prefix == "bastion:"
    assert settings.secrets.master_key is None
    assert settings.secrets.master_key_file is None
    assert settings.master_key_path == Path(".bastion/master.key")
    assert settings.server.engine == "native"
    assert settings.server.threads == 0
    assert settings.server.graceful_timeout == 10.0
    assert settings.server.backlog == 2048
    assert settings.server.access_log is False
    assert (settings.logging.level, settings.logging.format) == ("info", "json")
    assert settings.node_id is None
    assert settings.routes == []
    assert settings.demo.enabled is False


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.env = "production"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.listen.port = 1  # type: ignore[misc]


def test_development_defaults_announce_themselves(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert development_defaults(settings) == [
        f"SQLite database at {tmp_path / 'bastion.db'} (set storage: postgresql://… to scale out)",
        "in-process shared state (memory://): rate limits and replay caches are exact for this "
        "one process only (set shared: redis://… for several)",
        f"generated master key at {tmp_path / 'master.key'} "
        "(set secrets.master_key_file to keep your own)",
        f"self-signed TLS certificate in {tmp_path / 'tls'} "
        "(browsers will warn; set tls.cert and tls.key)",
        "issuer derived from the listen port: https://localhost:8443",
    ]


def test_no_development_defaults_when_everything_is_configured(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    settings = Settings.model_validate(
        {
            "issuer": "https://auth.example.com",
            "tls": {"cert": str(cert), "key": str(key)},
            "storage": "postgresql://bastion@db/bastion",
            "shared": "redis://cache:6379/0",
            "secrets": {"master_key_file": "/run/secrets/mk"},
        }
    )
    assert development_defaults(settings) == []
    assert production_problems(settings) == []


def test_issuer_url_follows_port_and_tls() -> None:
    assert Settings.model_validate({"listen": {"port": 9000}}).issuer_url == (
        "https://localhost:9000"
    )
    assert Settings.model_validate({"listen": {"port": 443}}).issuer_url == "https://localhost"
    off = Settings.model_validate({"tls": "off", "trusted_proxies": ["127.0.0.1"]})
    assert off.issuer_url == "http://localhost:8443"
    assert off.trusted_proxies == [ip_network("127.0.0.1/32")]


def test_explicit_issuer_is_normalised() -> None:
    assert Settings(issuer="https://auth.example.com/").issuer_url == "https://auth.example.com"
    assert Settings(issuer="https://example.com/auth/").issuer_url == "https://example.com/auth"
    assert Settings(issuer="http://localhost:8080").issuer_url == "http://localhost:8080"


def test_master_key_path_prefers_the_configured_file() -> None:
    settings = Settings.model_validate({"secrets": {"master_key_file": "/run/secrets/mk"}})
    assert settings.master_key_path == Path("/run/secrets/mk")


def test_routes_can_be_built_in_code() -> None:
    # The server adds the demo route this way.
    route = RouteSettings(
        name="demo", match=RouteMatch(path="/demo/"), upstream="http://127.0.0.1:1/", public=True
    )
    assert route.match.path == "/demo"
    assert route.upstream == "http://127.0.0.1:1"
    assert route.auth == []
    assert (route.strip_prefix, route.timeout) == (False, 30.0)
