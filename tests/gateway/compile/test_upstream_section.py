"""The ``upstream`` section of the native route table, and the forwarded-header vectors.

``tests/vectors/upstream_forward_headers.json`` holds requests and the exact
headers the gateway sends upstream for them (recorded from the Python gateway
before the native core took every request: the specification);
``native/src/mutate/tests.rs`` checks the native ``forward_headers`` against
them. Here: the file's requests are this module's :data:`CASES`, so neither
drifts from the other (a deliberate change edits both, and the expectation).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bastion.gateway.compile import compile_table, upstream
from bastion.gateway.errors import GatewayConfigError
from bastion.settings.config import Settings
from bastion.settings.gateway import IdentityHeaderSettings

VECTORS = Path(__file__).parents[2] / "vectors" / "upstream_forward_headers.json"


def settings(*routes: dict[str, Any], **extra: Any) -> Settings:
    return Settings.model_validate({"routes": list(routes), **extra})


def one(**kw: Any) -> dict[str, Any]:
    return {"name": "orders", "match": {"path": "/api/orders"}, "public": True, **kw}


DEFAULT_MUTATE = {
    "headers": {
        "subject": "x-bastion-subject",
        "client": "x-bastion-client",
        "scopes": "x-bastion-scopes",
        "key_id": "x-bastion-key-id",
        "request_id": "x-bastion-request-id",
    },
    "strip": [
        "remote-user",
        "x-auth-request-user",
        "x-bastion-client",
        "x-bastion-key-id",
        "x-bastion-request-id",
        "x-bastion-scopes",
        "x-bastion-subject",
        "x-client-id",
        "x-forwarded-user",
        "x-remote-user",
        "x-scopes",
        "x-user",
        "x-user-id",
    ],
    "assertion": None,
}
# What the compiler writes: besides, a browser session's email and roles headers (stripped
# from clients too). The forwarded-header vectors hold DEFAULT_MUTATE (the native loader
# defaults both names).
COMPILED_MUTATE = {
    **DEFAULT_MUTATE,
    "headers": {
        **DEFAULT_MUTATE["headers"],
        "email": "x-bastion-email",
        "roles": "x-bastion-roles",
    },
    "strip": sorted({*DEFAULT_MUTATE["strip"], "x-bastion-email", "x-bastion-roles"}),
}


def test_section_of_a_plain_route() -> None:
    s = settings(one(upstream="http://orders.internal:9000/v1/", strip_prefix=True))
    assert upstream.section(s.routes[0], s) == {
        "targets": [
            {
                "scheme": "http",
                "host": "orders.internal",
                "port": 9000,
                "base_path": "/v1",
                "host_header": "orders.internal:9000",
                "key": "http://orders.internal:9000|",
            }
        ],
        "base_path": "/v1",
        "strip_prefix": "/api/orders",
        "timeout": 30.0,
        "connect_timeout": 5.0,
        "read_timeout": 30.0,
        "health": {"failures": 3, "cooldown": 5.0, "max_cooldown": 300.0},
        "pool": {"max_idle": 64, "idle_timeout": 30.0},
        "tls": {"ca": None, "client_cert": None, "client_key": None},
        "mutate": COMPILED_MUTATE,
    }


def test_section_of_several_targets_with_tls_and_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read by the compiler\n")
    s = settings(
        one(
            upstream=["https://[2001:db8::1]/base", "http://b.internal", "https://c.internal:8443"],
            timeout=10,
            connect_timeout=1,
            read_timeout=2.5,
            health={"failures": 5, "cooldown": 2, "max_cooldown": 60},
            upstream_ca=str(ca),
        ),
        identity_headers={"subject": "X-Sub", "strip": ["X-Custom-Auth"]},
    )
    got = upstream.section(s.routes[0], s)
    assert isinstance(got, dict)
    profile = f"orders:{ca}:None"
    assert got["targets"] == [
        {
            "scheme": "https",
            "host": "2001:db8::1",
            "port": 443,
            "base_path": "/base",
            "host_header": "[2001:db8::1]",
            "key": f"https://[2001:db8::1]:443|{profile}",
        },
        {
            "scheme": "http",
            "host": "b.internal",
            "port": 80,
            "base_path": "",
            "host_header": "b.internal",
            "key": "http://b.internal:80|",
        },
        {
            "scheme": "https",
            "host": "c.internal",
            "port": 8443,
            "base_path": "",
            "host_header": "c.internal:8443",
            "key": f"https://c.internal:8443|{profile}",
        },
    ]
    # The first target's base path serves every target (CompiledRoute.upstream_path).
    assert got["base_path"] == "/base"
    assert got["strip_prefix"] is None
    assert (got["timeout"], got["connect_timeout"], got["read_timeout"]) == (10.0, 1.0, 2.5)
    assert got["health"] == {"failures": 5, "cooldown": 2.0, "max_cooldown": 60.0}
    assert got["tls"] == {"ca": str(ca), "client_cert": None, "client_key": None}
    assert got["mutate"]["headers"]["subject"] == "x-sub"
    assert "x-custom-auth" in got["mutate"]["strip"]
    assert "x-sub" in got["mutate"]["strip"]
    assert "x-bastion-subject" not in got["mutate"]["strip"]  # still stripped: the prefix


def test_section_with_an_upstream_client_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("x")
    key.write_text("x")
    s = settings(
        one(
            upstream="https://a.internal",
            upstream_client_cert=str(cert),
            upstream_client_key=str(key),
        )
    )
    got = upstream.section(s.routes[0], s)
    assert isinstance(got, dict)
    assert got["tls"] == {"ca": None, "client_cert": str(cert), "client_key": str(key)}
    assert got["targets"][0]["key"] == f"https://a.internal:443|orders:None:{cert}"


def test_strip_prefix_of_the_root_route_cuts_nothing() -> None:
    s = settings(one(match={"path": "/"}, upstream="http://a:1", strip_prefix=True))
    got = upstream.section(s.routes[0], s)
    assert isinstance(got, dict)
    assert got["strip_prefix"] is None


def test_the_assertion_is_compiled_as_the_python_step_signs_it() -> None:
    s = settings(
        one(upstream="http://a.internal:9000/v1"),
        one(name="two", match={"path": "/two"}, upstream=["http://a:1", "http://b:2"]),
        one(name="three", match={"path": "/3"}, upstream="http://c", assertion_audience="urn:c"),
        issuer="https://auth.example",
        identity_headers={"assertion": {"enabled": True, "ttl": "20.9s", "header": "X-Id-Jwt"}},
    )
    sections = [upstream.section(r, s) for r in s.routes]
    assertions = [section["mutate"]["assertion"] for section in sections]  # type: ignore[index]
    base = {"header": "x-id-jwt", "issuer": "https://auth.example", "ttl": 20}
    assert assertions == [
        {**base, "audience": "http://a.internal:9000/v1"},
        # mutate(): str(route.upstream), a list's repr included.
        {**base, "audience": "['http://a:1', 'http://b:2']"},
        {**base, "audience": "urn:c"},
    ]
    # The client's header of that name is stripped, any spelling.
    assert "x-id-jwt" in sections[0]["mutate"]["strip"]  # type: ignore[index]


def test_pool_defaults_are_the_python_clients() -> None:
    # What the Python upstream client pooled (64 idle connections, 30 s), kept natively.
    assert (upstream.POOL_MAX_IDLE, upstream.POOL_IDLE_TIMEOUT) == (64, 30.0)


def test_websocket_routes_have_a_native_upstream() -> None:
    s = settings(one(upstream="https://a.internal", websocket=True))
    section = upstream.section(s.routes[0], s)
    assert isinstance(section, dict)
    assert section["targets"][0]["scheme"] == "https"


def test_the_table_carries_the_section() -> None:
    s = settings(one(upstream="http://a:1"))
    entry = compile_table(s)["routes"][0]
    assert entry["upstream"]["targets"][0]["key"] == "http://a:1|"


def test_a_url_python_refuses_is_refused() -> None:
    s = settings(one(upstream="http://a:1"))
    bad = SimpleNamespace(
        name="orders",
        upstreams=["ftp://a"],
        websocket=SimpleNamespace(enabled=False),
        upstream_client_cert=None,
        upstream_client_key=None,
    )
    with pytest.raises(GatewayConfigError, match=r"routes\[orders\]\.upstream must be an http"):
        upstream.section(bad, s)


def test_default_mutate_is_the_runtime_rules() -> None:
    no_route = SimpleNamespace()  # read only when the assertion is on
    settings = SimpleNamespace(identity_headers=IdentityHeaderSettings())
    assert upstream._mutate(no_route, settings) == COMPILED_MUTATE


# -- forwarded headers: Python through a real echo upstream, the vectors native reads ----------

SPOOFED_IDENTITY = [
    ("X-Bastion-Subject", "admin"),
    ("X_Bastion_Subject", "admin"),
    ("x-bastion-client", "evil"),
    ("X-BASTION-SCOPES", "admin:all"),
    ("x-bastion-request-id", "forged"),
    ("X-Bastion-Anything", "x"),
    ("x-user-id", "root"),
    ("X_User_Id", "root"),
    ("X-Forwarded-User", "root"),
    ("Remote_User", "root"),
    ("X-Scopes", "admin"),
    ("x-keep", "yes"),
]
HOP_BY_HOP = [
    ("connection", "keep-alive, X-Secret"),
    ("connection", "x-other, X_Bastion_Thing, host, x-forwarded-for, content-length"),
    ("x-secret", "s"),
    ("x-other", "o"),
    ("x_other", "o2"),
    ("keep-alive", "timeout=5"),
    ("te", "trailers"),
    ("trailer", "x-t"),
    ("upgrade", "websocket"),
    ("proxy-authorization", "Basic abc"),
    ("proxy-connection", "keep-alive"),
    ("expect", "100-continue"),
    ("x-kept", "yes"),
]
FORWARDED = [
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-for", "5.6.7.8"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=1.2.3.4"),
    ("x-real-ip", "1.2.3.4"),
]
OVERRIDES = [
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("X_Original_URL", "/admin"),
    ("x-forwarded-prefix", "/evil"),
    ("x-forwarded-port", "1"),
    ("x-forwarded-email", "admin@example.com"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("X_Forwarded_Prefix", "/x"),
    ("true-client-ip", "6.6.6.6"),
    ("cf-connecting-ip", "6.6.6.6"),
    ("x-host", "evil"),
    ("x-kept", "yes"),
]
ALICE = {"subject": "user:alice", "client_id": "web-app", "scopes": ["b", "a"], "key_id": None}
CUSTOM_MUTATE = {
    "headers": {
        "subject": "x-user-sub",
        "client": "x-client-ip",
        "scopes": "x-bastion-scopes",
        "key_id": "x-key",
        "request_id": "x-rid",
    },
    "strip": sorted({*DEFAULT_MUTATE["strip"], "x-user-sub", "x-client-ip", "x-key", "x-rid"}),
}


def case(name: str, headers: list[tuple[str, str]], **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "peer": "203.0.113.7",
        "tls": False,
        "trusted_peer": False,
        "request_id": "rid-1",
        "identity": None,
        "consumed": [],
        "mutate": DEFAULT_MUTATE,
        "headers": [("host", "gw.test"), *[(n.lower(), v) for n, v in headers]],
    }
    base.update(kw)
    return base


CASES = [
    case("plain", [("accept", "*/*"), ("user-agent", "t/1"), ("x-request-id", "abc")]),
    case("no request id", [("accept", "*/*")], request_id=None),
    case("spoofed identity, anonymous", SPOOFED_IDENTITY),
    case("spoofed identity, alice", SPOOFED_IDENTITY, identity=ALICE),
    case("hop-by-hop and connection-named", HOP_BY_HOP, identity=ALICE),
    case("forwarded from an untrusted peer", FORWARDED),
    case("forwarded from a trusted proxy", FORWARDED, trusted_peer=True, tls=True),
    case("trusted proxy without forwarded headers", [("accept", "*/*")], trusted_peer=True),
    case(
        "trusted proxy, empty forwarded values",
        [("x-forwarded-proto", ""), ("x-forwarded-host", "")],
        trusted_peer=True,
        tls=True,
    ),
    case("overrides from an untrusted peer", OVERRIDES),
    case("overrides from a trusted proxy", OVERRIDES, trusted_peer=True),
    case("https", [("accept", "*/*")], tls=True, peer="2001:db8::7"),
    case(
        "method overrides",
        [
            ("x-http-method-override", "DELETE"),
            ("x-method-override", "PUT"),
            ("X_HTTP_Method_Override", "PATCH"),
            ("x-http-method", "PUT"),
        ],
    ),
    case(
        "consumed credential",
        [("authorization", "Bearer bst_x"), ("x-api-key", "bst_y"), ("x-keep", "1")],
        identity={"subject": "key:k1", "client_id": None, "scopes": [], "key_id": "k1"},
        consumed=["authorization", "x-api-key"],
    ),
    case(
        "custom names and encoding",
        [("x-user-sub", "forged"), ("x_key", "forged"), ("x-rid", "forged"), ("x-keep", "1")],
        identity={"subject": "zoë 50%", "client_id": "c\tid", "scopes": ["x", "é"], "key_id": "k"},
        mutate=CUSTOM_MUTATE,
        request_id="rid:2",
    ),
    case(
        "custom client header named like a client-address claim, trusted",
        [("accept", "*/*")],
        identity=ALICE,
        mutate=CUSTOM_MUTATE,
        trusted_peer=True,
    ),
    case(
        "repeated headers keep their order",
        [("x-multi", "1"), ("accept", "a"), ("x-multi", "2"), ("cookie", "a=1"), ("cookie", "b=2")],
    ),
]


def test_forwarded_header_vectors_are_the_cases() -> None:
    vectors = json.loads(VECTORS.read_text())
    assert [v["name"] for v in vectors] == [c["name"] for c in CASES]
    for vector, given in zip(vectors, CASES, strict=True):
        request = json.loads(json.dumps(given))
        # The vectors hold no assertion: it is off in every case (signed natively, tested
        # by test_the_assertion_is_compiled_as_the_python_step_signs_it).
        assert request["mutate"].pop("assertion", None) is None, vector["name"]
        assert {k: v for k, v in vector.items() if k != "expected"} == request, vector["name"]
        # Every expectation forwards something, and never the Host the client sent.
        assert vector["expected"], vector["name"]
        assert all(name != "host" for name, _ in vector["expected"]), vector["name"]
