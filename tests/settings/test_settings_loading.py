"""Loading: YAML file < BASTION_* variables, env: references and shorthands."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path

import pytest

from bastion.settings import Settings, load_settings

Load = Callable[..., Settings]

FULL = """
env: development
data_dir: /srv/bastion
listen: {host: 0.0.0.0, port: 9443}
issuer: https://auth.example.com/
trusted_proxies: [10.0.0.0/8, 192.0.2.7, "2001:db8::/32"]
storage: {url: "postgres://bastion@db/bastion", pool_size: 5}
shared: {url: "redis://cache:6379/1", key_prefix: "b1:"}
secrets: {master_key_file: /run/secrets/mk}
server: {engine: native, graceful_timeout: 2.5, backlog: 128, access_log: true}
logging: {level: DEBUG, format: console}
node_id: node-1
demo: {enabled: true}
routes:
  - name: orders
    match: {path: /api/orders/, host: API.Example.com, methods: [get, POST, get]}
    upstream: http://orders.internal:9000/
    auth: [api_key, jwt]
    strip_prefix: true
    timeout: 5
  - name: health
    match: {path: /api/health}
    upstream: https://orders.internal
    public: true
"""


def test_yaml_file_sets_every_key(load: Load) -> None:
    s = load(FULL)
    assert s.env == "development"
    assert s.data_dir == Path("/srv/bastion")
    assert (s.listen.host, s.listen.port) == ("0.0.0.0", 9443)
    assert s.issuer_url == "https://auth.example.com"
    assert s.trusted_proxies == [
        ip_network("10.0.0.0/8"),
        ip_network("192.0.2.7/32"),
        ip_network("2001:db8::/32"),
    ]
    assert s.storage_url == "postgresql://bastion@db/bastion"  # postgres:// normalised
    assert s.storage.pool_size == 5
    assert (s.shared.url, s.shared.key_prefix) == ("redis://cache:6379/1", "b1:")
    assert s.master_key_path == Path("/run/secrets/mk")
    assert (s.server.engine, s.server.graceful_timeout) == ("native", 2.5)
    assert (s.server.backlog, s.server.access_log) == (128, True)
    assert (s.logging.level, s.logging.format) == ("debug", "console")
    assert s.node_id == "node-1"
    assert s.demo.enabled is True
    orders, health = s.routes
    assert orders.name == "orders"
    assert orders.match.path == "/api/orders"
    assert orders.match.host == "api.example.com"
    assert orders.match.methods == ["GET", "POST"]
    assert orders.upstream == "http://orders.internal:9000"
    assert orders.auth == ["api_key", "jwt"]
    assert (orders.public, orders.strip_prefix, orders.timeout) == (False, True, 5.0)
    assert health.public is True
    assert health.match.methods is None
    assert health.upstream == "https://orders.internal"


def test_empty_file_means_defaults(load: Load) -> None:
    assert load("") == load_settings(None, {})
    assert load("# only a comment\n") == load_settings(None, {})


def test_config_path_from_bastion_config(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("listen: {port: 9001}\n")
    assert load_settings(None, {"BASTION_CONFIG": str(path)}).listen.port == 9001
    # An explicit path wins over BASTION_CONFIG.
    other = tmp_path / "c.yaml"
    other.write_text("listen: {port: 9002}\n")
    assert load_settings(other, {"BASTION_CONFIG": str(path)}).listen.port == 9002


def test_environment_overrides_file(load: Load) -> None:
    text = "listen: {host: 0.0.0.0, port: 9443}\nlogging: {level: warning}\n"
    s = load(
        text,
        {
            "BASTION_LISTEN__PORT": "9000",
            "BASTION_LOGGING__FORMAT": "console",
            "BASTION_ENV": "development",
            "BASTION_NODE_ID": "0123",
            "BASTION_SERVER__ACCESS_LOG": "yes",
            "BASTION_SERVER__GRACEFUL_TIMEOUT": "1.5",
        },
    )
    assert s.listen.port == 9000  # the variable wins
    assert s.listen.host == "0.0.0.0"  # the file's sibling key survives
    assert (s.logging.level, s.logging.format) == ("warning", "console")
    assert s.node_id == "0123"  # text keys take the raw string, not YAML's octal 83
    assert s.server.access_log is True
    assert s.server.graceful_timeout == 1.5


def test_environment_values_are_yaml(load: Load) -> None:
    s = load(
        None,
        {
            "BASTION_TLS": "off",
            "BASTION_TRUSTED_PROXIES": "[10.0.0.0/8, 172.16.0.1]",
            "BASTION_STORAGE": "postgresql://bastion@db/bastion",
            "BASTION_LISTEN": "{host: 0.0.0.0, port: 8080}",
            "BASTION_TLS__MIN_VERSION": "1.3",
        },
    )
    assert s.tls.mode == "off"
    assert s.tls.min_version == "1.3"
    assert s.trusted_proxies == [ip_network("10.0.0.0/8"), ip_network("172.16.0.1/32")]
    assert s.storage_url == "postgresql://bastion@db/bastion"
    assert (s.listen.host, s.listen.port) == ("0.0.0.0", 8080)
    assert s.issuer_url == "http://localhost:8080"


def test_comma_separated_trusted_proxies(load: Load) -> None:
    s = load(None, {"BASTION_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    assert s.trusted_proxies == [ip_network("10.0.0.0/8"), ip_network("::1/128")]


def test_shorthand_variable_merges_into_file_section(load: Load) -> None:
    s = load("storage: {pool_size: 3}\n", {"BASTION_STORAGE": "postgresql://u@db/b"})
    assert (s.storage.url, s.storage.pool_size) == ("postgresql://u@db/b", 3)
    s = load("storage: postgresql://u@db/b\n", {"BASTION_STORAGE__POOL_SIZE": "4"})
    assert (s.storage.url, s.storage.pool_size) == ("postgresql://u@db/b", 4)


def test_empty_variable_means_unset(load: Load) -> None:
    s = load("issuer: https://auth.example.com\n", {"BASTION_ISSUER": ""})
    assert s.issuer is None


def test_test_suite_and_config_variables_are_not_settings(load: Load) -> None:
    s = load(None, {"BASTION_TEST_POSTGRES_URL": "postgresql://x", "BASTION_TEST_ANYTHING": "1"})
    assert s == load_settings(None, {})


def test_env_references_anywhere(load: Load) -> None:
    text = """
storage: env:DB_URL
listen: {port: env:PORT}
secrets: {master_key: env:BASTION_MASTER_KEY}
trusted_proxies: [env:PROXY]
routes:
  - name: a
    match: {path: /a}
    upstream: env:UPSTREAM
    public: true
"""
    s = load(
        text,
        {
            "DB_URL": "postgresql://bastion:pw@db/bastion",
            "PORT": "9100",
            "BASTION_MASTER_KEY": "k" * 43,
            "PROXY": "10.1.0.0/16",
            "UPSTREAM": "http://a.internal:81",
        },
    )
    assert s.storage_url == "postgresql://bastion:pw@db/bastion"
    assert s.listen.port == 9100
    assert s.secrets.master_key is not None
    assert s.secrets.master_key.get_secret_value() == "k" * 43
    assert s.trusted_proxies == [ip_network("10.1.0.0/16")]
    assert s.routes[0].upstream == "http://a.internal:81"
    # BASTION_MASTER_KEY is referenced, so it is not an unknown setting.


def test_env_reference_inside_environment_variable(load: Load) -> None:
    s = load(None, {"BASTION_STORAGE": "env:DATABASE_URL", "DATABASE_URL": "sqlite:///x.db"})
    assert s.storage_url == "sqlite:///x.db"


@pytest.mark.parametrize(
    "text",
    [
        "tls: off\ntrusted_proxies: [127.0.0.1]\n",
        "tls: 'off'\ntrusted_proxies: [127.0.0.1]\n",
        "tls: {mode: 'off'}\ntrusted_proxies: 127.0.0.1\n",
    ],
)
def test_tls_off_shorthands(load: Load, text: str) -> None:
    assert load(text).tls.mode == "off"


def test_tls_files_shorthand(load: Load, tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("cert")
    (tmp_path / "k.pem").write_text("key")
    s = load(f"tls: {{cert: {tmp_path}/c.pem, key: {tmp_path}/k.pem}}\n")
    assert s.tls.mode == "files"
    assert (s.tls.cert, s.tls.key) == (tmp_path / "c.pem", tmp_path / "k.pem")


def test_tls_mode_override_keeps_files_unused(load: Load, tmp_path: Path) -> None:
    # A file written for production can run locally with BASTION_TLS__MODE=auto.
    s = load("tls: {cert: /nope/c.pem, key: /nope/k.pem}\n", {"BASTION_TLS__MODE": "auto"})
    assert s.tls.mode == "auto"


def test_string_shorthands_for_storage_shared_and_demo(load: Load) -> None:
    s = load("storage: postgresql+asyncpg://u@db/b\nshared: rediss://cache:6380/0\ndemo: true\n")
    assert s.storage_url == "postgresql+asyncpg://u@db/b"
    assert s.shared.url == "rediss://cache:6380/0"
    assert s.demo.enabled is True
    assert load("shared: unix:///run/redis.sock\n").shared.url == "unix:///run/redis.sock"


def test_empty_sections_mean_defaults(load: Load) -> None:
    assert load("tls:\nstorage:\nlisten:\n") == load_settings(None, {})


def test_example_configuration_validates(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "bastion.example.yaml"
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("certificate")
    key.write_text("key")
    s = load_settings(
        example,
        {
            "BASTION_DATABASE_URL": "postgresql://bastion:pw@db/bastion",
            "BASTION_REDIS_URL": "redis://cache:6379/0",
            "BASTION_API_KEY_PEPPER": "pepper-for-the-example-config-test",
            "BASTION_LEAK_REPORT_SECRET": "leak-secret-for-the-example-config-test",
            "BASTION_INTROSPECTION_SECRET": "introspection-secret-for-the-example-test",
            "BASTION_TLS__CERT": str(cert),
            "BASTION_TLS__KEY": str(key),
        },
    )
    assert s.env == "production"
    assert s.issuer_url == "https://auth.example.com"
    assert s.tls.mode == "files"
    assert s.storage_url == "postgresql://bastion:pw@db/bastion"
    assert s.shared.url == "redis://cache:6379/0"
    assert s.master_key_path == Path("/run/secrets/bastion-master-key")
    assert [r.name for r in s.routes] == ["orders", "health"]
    assert s.routes[0].auth == ["api_key", "jwt"]
    assert s.routes[1].public is True


def test_example_configuration_shows_every_key() -> None:
    import yaml

    example = Path(__file__).parents[2] / "bastion.example.yaml"
    data = yaml.safe_load(example.read_text())
    assert set(data) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and hasattr(model, "model_fields"):
            written = set(data[name])
            if name == "secrets":
                written.add("master_key")  # shown commented out: one of the two
            assert written == set(model.model_fields), name
    route = data["routes"][0]
    from bastion.settings import RouteMatch, RouteSettings

    assert set(route) | {"public"} == set(RouteSettings.model_fields)
    assert set(route["match"]) == set(RouteMatch.model_fields)
