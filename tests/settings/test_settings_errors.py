"""Bad configurations: each problem is one exact line naming the key, the value and the fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.settings import Settings, SettingsError, load_settings, production_problems

Errors = Callable[..., list[str]]

ROUTE = "{name: %s, match: {path: %s}, upstream: 'http://x.internal', auth: [jwt]}"
FIX_YAML = (
    "fix the YAML syntax there (quote values that contain ': ' or start with a special character)"
)


# ---------------------------------------------------------------------------
# the file


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    assert info.value.errors == [
        f"config file {path}: not found — check the path (or BASTION_CONFIG), or omit it to "
        "run on development defaults"
    ]


def test_missing_file_named_by_bastion_config(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError, match=r"^config file .*nope\.yaml: not found"):
        load_settings(None, {"BASTION_CONFIG": str(path)})


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path, {})
    assert info.value.errors == [
        f"config file {tmp_path}: is a directory — give the YAML file itself"
    ]


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("listen:\n  port: 1\nissuer: a: b\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    assert info.value.errors == [
        f"config file {path}, line 3, column 10: mapping values are not allowed here — {FIX_YAML}"
    ]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("- listen\n- tls\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    assert info.value.errors == [
        f"config file {path}: the top level must be a mapping of settings (key: value), not a list"
    ]


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bastion.yaml"
    path.write_text("routes:\n  - name: a\n    name: b\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, {})
    assert info.value.errors == [
        f"config file {path}, line 3, column 5: key 'name' appears twice — keep one"
    ]


# ---------------------------------------------------------------------------
# keys and values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "listen: {port: 70000}",
            ["listen.port: 70000 is not a valid port — use a number from 1 to 65535"],
        ),
        (
            "listen: {port: http}",
            ["listen.port: 'http' is not a valid port — use a number from 1 to 65535"],
        ),
        ("env: staging", ["env: 'staging' is not allowed — use 'development' or 'production'"]),
        (
            "issuer: auth.example.com",
            [
                "issuer: 'auth.example.com' is not an absolute http(s) URL — use e.g. "
                "https://auth.example.com"
            ],
        ),
        (
            "issuer: https://auth.example.com/?tenant=1",
            [
                "issuer: 'https://auth.example.com/?tenant=1' has a query or fragment — remove "
                "everything from '?' or '#'"
            ],
        ),
        (
            "issuer: http://auth.example.com",
            [
                "issuer: 'http://auth.example.com' uses http — use https (http is only allowed "
                "for localhost in development)"
            ],
        ),
        (
            "tls: off",
            [
                "tls: off needs trusted_proxies — bastion only serves plain HTTP behind a "
                "TLS-terminating proxy; list that proxy's address in trusted_proxies, or use "
                "tls mode auto or files"
            ],
        ),
        (
            "tls: {mode: files}",
            [
                "tls: tls.cert and tls.key are missing — a certificate (PEM) and its private key "
                "go together; set both tls.cert and tls.key"
            ],
        ),
        (
            "tls: {mode: of}",
            ["tls.mode: 'of' is not allowed — use 'auto', 'files' or 'off'"],
        ),
        (
            "trusted_proxies: [10.0.0.1/8, proxy.internal]",
            [
                "trusted_proxies[0]: '10.0.0.1/8' has host bits set — did you mean 10.0.0.0/8?",
                "trusted_proxies[1]: 'proxy.internal' is not an IP address or network — use e.g. "
                "10.0.0.0/8 or 192.0.2.10",
            ],
        ),
        (
            "storage: mysql://bastion@db/bastion",
            [
                "storage.url: 'mysql://bastion@db/bastion' is not a supported database URL — use "
                "sqlite:///path/to/bastion.db or postgresql://user@host/dbname (schemes: sqlite, "
                "postgresql, postgres, postgresql+asyncpg)"
            ],
        ),
        (
            "shared: memcached://cache:11211",
            [
                "shared.url: 'memcached://cache:11211' is not a supported shared-state URL — use "
                "memory:// (one process), redis://host:6379/0, rediss://host:6380/0 or "
                "unix:///path/redis.sock"
            ],
        ),
        (
            "secrets: {master_key: abcdefgh, master_key_file: /run/secrets/mk}",
            [
                "secrets: master_key and master_key_file are both set — keep one "
                "(master_key_file is preferred, master_key usually is env:BASTION_MASTER_KEY)"
            ],
        ),
        (
            "server: {engine: gunicorn, graceful_timeout: 0, backlog: yes}",
            [
                "server.engine: 'gunicorn' is not allowed — use 'native'",
                "server.graceful_timeout: 0 is too small — use a number greater than 0",
                "server.backlog: true is not a number",
            ],
        ),
        (
            "server: {engine: uvicorn}",
            [
                "server.engine: uvicorn no longer serves the public port — the native front "
                "does (remove server.engine, or set it to native)"
            ],
        ),
        (
            "server: {engine: granian}",
            [
                "server.engine: granian no longer serves the public port — the native front "
                "does (remove server.engine, or set it to native)"
            ],
        ),
        (
            "logging: {level: verbose}",
            ["logging.level: 'verbose' is not allowed — use 'debug', 'info', 'warning' or 'error'"],
        ),
        (
            "listen: [127.0.0.1, 8443]\nroutes: {orders: {}}",
            [
                "listen: expected a mapping of keys, got a list",
                "routes: expected a list, got a mapping",
            ],
        ),
        (
            "listen: {1: x}",
            [
                "listen: key 1 is not a name — keys are words like 'upstream' (quote it if YAML "
                "reads it as a number or true/false)"
            ],
        ),
    ],
)
def test_bad_values(errors: Errors, text: str, expected: list[str]) -> None:
    assert errors(text + "\n") == expected


def test_tls_files_must_exist_and_be_readable(errors: Errors, tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("key")
    assert errors(f"tls: {{cert: {tmp_path}/missing.pem, key: {key}}}\n") == [
        f"tls.cert: file {tmp_path}/missing.pem does not exist — check the path"
    ]
    assert errors(f"tls: {{cert: {tmp_path}, key: {key}}}\n") == [
        f"tls.cert: {tmp_path} is a directory — give the file itself"
    ]
    assert errors(f"tls: {{key: {key}}}\n") == [
        "tls: tls.cert is missing — a certificate (PEM) and its private key go together; "
        "set both tls.cert and tls.key"
    ]


def test_several_problems_in_one_error(load: Callable[..., Settings]) -> None:
    with pytest.raises(SettingsError) as info:
        load("listen: {port: 0}\nenv: test\nlogging: {format: xml}\n")
    # In the order of the file's keys.
    assert info.value.errors == [
        "listen.port: 0 is not a valid port — use a number from 1 to 65535",
        "env: 'test' is not allowed — use 'development' or 'production'",
        "logging.format: 'xml' is not allowed — use 'json' or 'console'",
    ]
    assert info.value.detail == (
        "listen.port: 0 is not a valid port — use a number from 1 to 65535 (and 2 more)"
    )


# ---------------------------------------------------------------------------
# routes


def test_route_needs_auth_or_public(errors: Errors) -> None:
    text = (
        "routes:\n"
        "  - " + ROUTE % ("health", "/health") + "\n"
        "  - {name: orders, match: {path: /orders}, upstream: 'http://x.internal'}\n"
    )
    assert errors(text) == [
        "routes[1] (orders): say how requests are authenticated — set auth: [api_key, jwt] or "
        "public: true"
    ]


def test_route_cannot_be_public_and_authenticated(errors: Errors) -> None:
    text = (
        "routes:\n"
        "  - {name: a, match: {path: /a}, upstream: 'http://x', public: true, auth: [jwt]}\n"
    )
    assert errors(text) == [
        "routes[0] (a): public: true and auth exclude each other — a public route is not "
        "authenticated; remove one of them"
    ]


def test_route_fields(errors: Errors) -> None:
    text = (
        "routes:\n"
        "  - name: Orders API\n"
        "    match: {path: orders, methods: [get, FETCH], host: 'bad host'}\n"
        "    upstream: 'http://svc:pw@orders.internal:9000/?x=1'\n"
        "    auth: [apikey, jwt, jwt]\n"
        "    timeout: -1\n"
        "  - name: b\n"
        "    match: {path: '/a/../b', methods: []}\n"
        "    upstream: ftp://files.internal\n"
        "    public: true\n"
    )
    assert errors(text) == [
        "routes[0].name: 'Orders API' is not a route name — use lower-case letters, digits, '-' "
        "and '_', starting with a letter or digit, at most 63 characters",
        "routes[0].match.path: 'orders' must start with '/' — e.g. /api/orders",
        "routes[0].match.host: 'bad host' is not a host name — use e.g. api.example.com "
        "(optionally with :port)",
        "routes[0].match.methods[1]: 'FETCH' is not a method bastion routes — use GET, HEAD, POST, "
        "PUT, PATCH, DELETE or OPTIONS",
        "routes[0].upstream: 'http://svc:***@orders.internal:9000/?x=1' contains a user name or "
        "password — remove it (e.g. http://orders.internal:9000)",
        "routes[0].auth[0]: 'apikey' is not allowed — use 'api_key', 'jwt', 'introspection', "
        "'session' or 'mtls'",
        "routes[0].timeout: -1 is too small — use a number greater than 0",
        "routes[1].match.path: '/a/../b' is not a normalised path — no '.', '..' or empty segments",
        "routes[1].match.methods: is an empty list, which matches nothing — remove it to match "
        "every method",
        "routes[1].upstream: 'ftp://files.internal' is not an absolute http(s) URL — use e.g. "
        "http://orders.internal:9000",
    ]


def test_duplicate_auth_method(errors: Errors) -> None:
    text = "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x', auth: [jwt, jwt]}\n"
    assert errors(text) == ["routes[0].auth[1]: 'jwt' is listed twice — keep one"]


def test_route_names_are_unique_and_matches_do_not_collide(errors: Errors) -> None:
    text = (
        "routes:\n"
        "  - {name: orders, match: {path: /api/orders, methods: [GET]}, upstream: 'http://x', "
        "public: true}\n"
        "  - {name: orders-all, match: {path: /api/orders/}, upstream: 'http://y', auth: [jwt]}\n"
        "  - " + ROUTE % ("orders", "/api/other") + "\n"
    )
    assert errors(text) == [
        "routes[1] (orders-all): takes the same requests as routes[0] (orders) — same host, path "
        "and methods; change one match or merge the routes",
        "routes[2].name: 'orders' is already the name of routes[0] — route names must be unique",
    ]


def test_same_path_with_other_methods_or_hosts_is_fine(load: Callable[..., Settings]) -> None:
    text = (
        "routes:\n"
        "  - {name: r, match: {path: /a, methods: [GET, HEAD]}, upstream: 'http://x', "
        "public: true}\n"
        "  - {name: w, match: {path: /a, methods: [POST]}, upstream: 'http://x', auth: [jwt]}\n"
        "  - {name: h, match: {path: /a, host: api.example.com}, upstream: 'http://x', "
        "auth: [jwt]}\n"
    )
    assert [r.name for r in load(text).routes] == ["r", "w", "h"]


# ---------------------------------------------------------------------------
# unknown keys and variables


# Every top-level key in declaration order: the start pins the original sections; sections
# added since must come after them and are listed in the messages too.
TOP_LEVEL = ", ".join(Settings.model_fields)
assert TOP_LEVEL.startswith(
    "env, data_dir, listen, issuer, tls, trusted_proxies, storage, shared, secrets, server, "
    "logging, node_id, routes, demo, signing_keys, tokens, api_keys, "
)


def test_unknown_keys_suggest_the_right_one(errors: Errors) -> None:
    text = (
        "listn: {port: 1}\n"
        "colour: blue\n"
        "server: {engin: granian}\n"
        "routes:\n"
        "  - {name: a, match: {path: /a, method: [GET]}, upstrem: 'http://x', public: true}\n"
    )
    assert errors(text) == [
        "listn: unknown key — did you mean 'listen'?",
        f"colour: unknown key — remove it (keys here: {TOP_LEVEL})",
        "server.engin: unknown key — did you mean 'engine'?",
        "routes[0].match.method: unknown key — did you mean 'methods'?",
        "routes[0].upstream: is required — add it",
        "routes[0].upstrem: unknown key — did you mean 'upstream'?",
    ]


def test_unknown_environment_variables(errors: Errors) -> None:
    assert errors(None, {"BASTION_LISTN__PORT": "9000"}) == [
        "BASTION_LISTN__PORT: unknown setting — did you mean BASTION_LISTEN__PORT?"
    ]
    assert errors(None, {"BASTION_MASTER_KEY": "k" * 32}) == [
        "BASTION_MASTER_KEY: unknown setting — did you mean BASTION_SECRETS__MASTER_KEY?"
    ]
    assert errors(None, {"BASTION_LISTEN__PROT": "9000"}) == [
        "BASTION_LISTEN__PROT: unknown setting — did you mean BASTION_LISTEN__PORT?"
    ]
    assert errors(None, {"BASTION_XYZZY": "1"}) == [
        "BASTION_XYZZY: unknown setting — bastion reads BASTION_<KEY> for its top-level keys "
        f"({TOP_LEVEL}) and "
        "BASTION_<KEY>__<SUBKEY> for nested ones; rename or "
        "unset it"
    ]


def test_bad_environment_values_name_the_variable(errors: Errors) -> None:
    assert errors("listen: {port: 9000}\n", {"BASTION_LISTEN__PORT": "0"}) == [
        "BASTION_LISTEN__PORT: 0 is not a valid port — use a number from 1 to 65535"
    ]
    assert errors(None, {"BASTION_LISTEN": "{host: 'a b'}"}) == [
        "BASTION_LISTEN (listen.host): 'a b' is not a host name or IP address — use e.g. "
        "0.0.0.0 or 127.0.0.1"
    ]
    assert errors("routes: []\n", {"BASTION_ROUTES__0__NAME": "x"}) == [
        "BASTION_ROUTES__0__NAME: routes is a list in the configuration, so it has no key '0' — "
        "set BASTION_ROUTES instead"
    ]


def test_missing_env_reference(errors: Errors) -> None:
    text = "secrets: {master_key: env:BASTION_MASTER_KEY}\nstorage: env:DB_URL\n"
    assert errors(text, {"DB_URL": ""}) == [
        "secrets.master_key: environment variable BASTION_MASTER_KEY is not set — export it, or "
        "change the reference env:BASTION_MASTER_KEY",
        "storage: environment variable DB_URL is empty — export it, or change the reference "
        "env:DB_URL",
    ]


# ---------------------------------------------------------------------------
# production


def test_production_refuses_development_defaults(errors: Errors) -> None:
    assert errors(None, {"BASTION_ENV": "production"}) == [
        "issuer: production needs an explicit issuer — the derived https://localhost:8443 only "
        "works on this machine; set issuer to the public https URL, e.g. https://auth.example.com",
        "tls: production refuses the self-signed development certificate — set tls.cert and "
        "tls.key, or tls: off behind a TLS-terminating proxy listed in trusted_proxies",
        "secrets: production refuses a generated master key — set secrets.master_key_file, or "
        "secrets.master_key: env:BASTION_MASTER_KEY",
    ]


def test_production_refuses_http_issuer(errors: Errors) -> None:
    text = (
        "env: production\nissuer: http://localhost:8080\ntls: off\ntrusted_proxies: [10.0.0.1]\n"
        "secrets: {master_key_file: /run/secrets/mk}\n"
    )
    assert errors(text) == [
        "issuer: production needs an https issuer, not 'http://localhost:8080' — set issuer to "
        "the public https URL, e.g. https://auth.example.com"
    ]


def test_production_behind_a_proxy_with_memory_shared_state(load: Callable[..., Settings]) -> None:
    text = (
        "env: production\nissuer: https://auth.example.com\ntls: off\n"
        "trusted_proxies: [10.0.0.0/8]\nsecrets: {master_key: env:BASTION_MASTER_KEY}\n"
    )
    settings = load(text, {"BASTION_MASTER_KEY": "k" * 43})
    assert settings.shared.url == "memory://"  # allowed: a single node
    assert production_problems(settings) == []


def test_production_problems_of_development_settings() -> None:
    # The function itself does not look at env: the CLI can ask "what would production refuse?".
    assert len(production_problems(Settings())) == 3


# ---------------------------------------------------------------------------
# secrets never reach an error


SECRET = "Hunter2-Sup3r-S3cret"


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (f"storage: mysql://bastion:{SECRET}@db/bastion\n", {}),
        (f"shared: memcached://:{SECRET}@cache\n", {}),
        (f"storage: 'postgresql://bastion:{SECRET}@db/bastion'\nlisten: {{port: 0}}\n", {}),
        (f"storage: mysql://db/bastion?password={SECRET}\n", {}),
        (f"issuer: https://u:{SECRET}@auth.example.com\n", {}),
        (
            "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://u:"
            + SECRET
            + "@x', public: true}\n",
            {},
        ),
        (f"secrets: {{master_key: {SECRET}, master_key_file: /x}}\n", {}),
        (f"secrets: {{master_key: [{SECRET}]}}\n", {}),
        (f"secrets: {{master_key: {SECRET}: x}}\n", {}),
        (f"listen:\n  port: 1\n  host: {SECRET}: [\n", {}),
        ("listen: {host: env:HOSTNAME_SECRET}\n", {"HOSTNAME_SECRET": SECRET + " x"}),
        ("secrets: {master_key_file: /x}\n", {"BASTION_SECRETS__MASTER_KEY": SECRET}),
        (None, {"BASTION_STORAGE": f"mysql://bastion:{SECRET}@db/x"}),
        (None, {"BASTION_ENV": "production", "BASTION_STORAGE": f"postgresql://u:{SECRET}@db/x"}),
    ],
)
def test_errors_never_contain_secrets(
    errors: Errors, text: str | None, env: dict[str, str]
) -> None:
    lines = errors(text, env)
    assert lines
    for line in lines:
        assert SECRET not in line
        assert "Sup3r" not in line
