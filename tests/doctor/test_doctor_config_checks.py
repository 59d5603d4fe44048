"""Configuration checks: each finding id fires exactly when its weakness is configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.doctor import Finding, check_settings
from bastion.settings import RouteSettings, Settings
from bastion.settings.routes import CorsSettings

#: A configuration with nothing to report (values a production deployment would use).
GOOD_LEAK_SECRET = "3f9c1e07b2d4c8e9a6b5d3f1e0c7a2b4"
CLEAN: dict[str, Any] = {
    "env": "production",
    "issuer": "https://auth.example.com",
    "storage": "postgresql://bastion@db/bastion",
    "shared": "redis://cache:6379/0",
    "secrets": {"master_key": "k" * 44},
    "signing_keys": {"rotate_every": "30d"},
    "api_keys": {"pepper": "pepper", "leak_report_secret": GOOD_LEAK_SECRET},
    "routes": [
        {
            "name": "orders",
            "match": {"path": "/api/orders"},
            "upstream": "http://orders.internal:9000",
            "auth": ["api_key"],
            "limits": [{"per": "key", "rate": "100/minute"}],
        }
    ],
}


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("cert")
    key.write_text("key")
    return {"cert": str(cert), "key": str(key)}


def make(tls_files: dict[str, str], **changes: Any) -> Settings:
    data = {**CLEAN, "tls": tls_files, **changes}
    return Settings.model_validate({k: v for k, v in data.items() if v is not None})


def ids(findings: list[Finding]) -> list[str]:
    return sorted(f.id for f in findings)


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, ids(findings)
    return findings[0]


def test_clean_configuration_has_no_findings(tls_files: dict[str, str]) -> None:
    assert check_settings(make(tls_files)) == []


def test_development_defaults() -> None:
    assert ids(check_settings(Settings())) == [
        "api_keys.no_leak_report_secret",
        "api_keys.no_pepper",
        "env.not_production",
        "issuer.derived",
        "secrets.generated_master_key",
        "signing_keys.no_rotation",
        "tls.self_signed",
    ]
    self_signed = next(f for f in check_settings(Settings()) if f.id == "tls.self_signed")
    assert self_signed.severity == "medium"


def test_tls_off_and_http_issuer(tls_files: dict[str, str]) -> None:
    settings = make(
        tls_files,
        env="development",
        tls="off",
        trusted_proxies=["10.0.0.0/8"],
        issuer="http://localhost:8080",
    )
    findings = check_settings(settings)
    assert ids(findings) == ["env.not_production", "issuer.http", "tls.off"]
    issuer = next(f for f in findings if f.id == "issuer.http")
    assert issuer.severity == "high"
    assert issuer.detail.startswith("the issuer is http://localhost:8080:")


def test_derived_issuer_with_tls_off_is_http_and_derived(tls_files: dict[str, str]) -> None:
    settings = make(tls_files, env="development", tls="off", trusted_proxies=["10.0.0.1"])
    settings = settings.model_copy(update={"issuer": None})
    assert ids(check_settings(settings)) == [
        "env.not_production",
        "issuer.derived",
        "issuer.http",
        "tls.off",
    ]


def test_public_routes_are_listed_by_name(tls_files: dict[str, str]) -> None:
    routes = [
        *CLEAN["routes"],
        {
            "name": "health",
            "match": {"path": "/health"},
            "upstream": "http://h:1",
            "public": True,
            "limits": [{"per": "ip", "rate": "10/second"}],
        },
        {
            "name": "status",
            "match": {"path": "/status"},
            "upstream": "http://h:1",
            "public": True,
            "limits": [{"per": "ip", "rate": "10/second"}],
        },
    ]
    finding = only(check_settings(make(tls_files, routes=routes)))
    assert (finding.id, finding.severity, finding.subjects) == (
        "routes.public",
        "info",
        ("health", "status"),
    )
    assert finding.detail == ("2 route(s) take requests without authentication: health, status")


def test_routes_without_limits(tls_files: dict[str, str]) -> None:
    routes = [{**CLEAN["routes"][0], "limits": []}]
    finding = only(check_settings(make(tls_files, routes=routes)))
    assert (finding.id, finding.severity, finding.subjects) == (
        "routes.no_limits",
        "medium",
        ("orders",),
    )


def _with_routes(settings: Settings, *routes: RouteSettings) -> Settings:
    return settings.model_copy(update={"routes": list(routes)})


def _route(settings: Settings, name: str, cors: CorsSettings | None) -> RouteSettings:
    # The clean route (authenticated, limited) with another name and this cors block.
    return settings.routes[0].model_copy(update={"name": name, "cors": cors})


def _refused(**fields: Any) -> CorsSettings:
    """A cors block the settings refuse at load ('*', 'null'): the check reports it anyway."""
    return CorsSettings.model_construct(**fields)


@pytest.mark.parametrize(
    ("cors", "expected"),
    [
        (CorsSettings(origins=["https://app.example.com"], credentials=True), []),
        (_refused(origins=["*"]), ["cors.wildcard"]),
        (_refused(origins=["*"], credentials=True), ["cors.credentials_broad", "cors.wildcard"]),
        (
            CorsSettings(origins=["http://app.example.com"], credentials=True),
            ["cors.credentials_broad"],
        ),
        (_refused(origins=["null"], credentials=True), ["cors.credentials_broad"]),
        (CorsSettings(origins=["http://app.example.com"], credentials=False), []),
        (_refused(origins=["https://*.example.com"], credentials=False), ["cors.wildcard"]),
        (None, []),
    ],
)
def test_cors(tls_files: dict[str, str], cors: CorsSettings | None, expected: list[str]) -> None:
    clean = make(tls_files)
    settings = _with_routes(clean, _route(clean, "web", cors))
    findings = check_settings(settings)
    assert ids(findings) == expected
    for finding in findings:
        assert (finding.severity, finding.subjects) == ("high", ("web",))


@pytest.mark.parametrize(
    ("proxies", "expected"),
    [
        (["10.0.0.0/8"], []),
        (["192.0.2.10", "fd00::/8"], ["fd00::/8"]),
        (["0.0.0.0/0"], ["0.0.0.0/0"]),
        (["::/0", "10.0.0.0/8"], ["::/0"]),
        (["8.0.0.0/7"], ["8.0.0.0/7"]),
    ],
)
def test_trusted_proxies(
    tls_files: dict[str, str], proxies: list[str], expected: list[str]
) -> None:
    findings = check_settings(make(tls_files, trusted_proxies=proxies))
    if not expected:
        assert findings == []
        return
    finding = only(findings)
    assert (finding.id, finding.severity, list(finding.subjects)) == (
        "trusted_proxies.too_broad",
        "high",
        expected,
    )


def test_long_access_tokens(tls_files: dict[str, str]) -> None:
    assert check_settings(make(tls_files, tokens={"access_token_ttl": "1h"})) == []
    finding = only(check_settings(make(tls_files, tokens={"access_token_ttl": "2h"})))
    assert (finding.id, finding.severity) == ("tokens.long_ttl", "medium")
    assert "7200s" in finding.detail


def test_demo_enabled(tls_files: dict[str, str]) -> None:
    finding = only(check_settings(make(tls_files, demo=True)))
    assert (finding.id, finding.severity) == ("demo.enabled", "high")


def test_pepper_leak_secret_and_rotation(tls_files: dict[str, str]) -> None:
    settings = make(tls_files, api_keys={"environment": "live"}, signing_keys={})
    assert ids(check_settings(settings)) == [
        "api_keys.no_leak_report_secret",
        "api_keys.no_pepper",
        "signing_keys.no_rotation",
    ]
    assert {f.severity for f in check_settings(settings)} == {"low"}


LEAK_VALUE = "LEAK-VALUE-456-Zq8Xw2Rt5Yu7Io9Pa"


def test_no_secret_in_any_finding(tls_files: dict[str, str]) -> None:
    settings = make(
        tls_files,
        env="development",
        api_keys={"pepper": "PEPPER-VALUE-123", "leak_report_secret": LEAK_VALUE},
        secrets={"master_key": "MASTER-KEY-789" * 4},
        tokens={"access_token_ttl": "2h"},
    )
    text = repr([f.as_dict() for f in check_settings(settings)])
    for secret in ("PEPPER-VALUE-123", LEAK_VALUE, "MASTER-KEY-789"):
        assert secret not in text


@pytest.mark.parametrize(
    "secret",
    [
        "a" * 32,  # one character
        "abcdefgh" * 4,  # a repeated pattern
        "0123456789" * 4,  # a repeated pattern with ten distinct characters
        "aabbccddeeffgghh" * 2,  # fewer than ten distinct characters
        "our-leak-report-secret-for-prod-2026",  # a placeholder word
        "changeme-Zq8Xw2Rt5Yu7Io9PaLk3Mn4B",
    ],
)
def test_weak_leak_report_secret(tls_files: dict[str, str], secret: str) -> None:
    settings = make(tls_files, api_keys={"pepper": "pepper", "leak_report_secret": secret})
    finding = only(check_settings(settings))
    assert (finding.id, finding.severity) == ("api_keys.weak_leak_report_secret", "medium")
    assert secret not in repr(finding.as_dict())
    assert "openssl rand -hex 32" in finding.fix


def test_leak_report_secret_shorter_than_32_characters_is_refused_at_load(
    tls_files: dict[str, str],
) -> None:
    with pytest.raises(ValidationError) as info:
        make(tls_files, api_keys={"leak_report_secret": "x" * 31})
    (error,) = info.value.errors()
    assert error["loc"] == ("api_keys", "leak_report_secret")
    assert error["msg"] == (
        "Value error, must be at least 32 characters, not 31 — generate one with "
        "`openssl rand -hex 32`"
    )
