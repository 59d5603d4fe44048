"""``bastion.settings.models`` keeps every name it had before the settings were split by area.

It is a thin re-export module: other code (and other branches) import from it, so each
name must still resolve there, to the very object of its new home.
"""

from __future__ import annotations

import importlib
import inspect

import bastion.settings.models as models

#: Every name ``bastion.settings.models`` defined (or imported: ``Limit``) before the split.
NAMES = [
    "_auth_references",
    "_BYTE_SIZE",
    "_byte_size",
    "_BYTE_UNITS",
    "_DEFAULT_EXTERNAL_ALGS",
    "_DEFAULT_PORTS",
    "_demo_shorthand",
    "_DURATION",
    "_duration",
    "_EVENT_PATTERN",
    "_HEADER_NAME",
    "_header_names",
    "_HOST",
    "_http_url",
    "_identity_header",
    "_issuer_url",
    "_lower",
    "_metrics_shorthand",
    "_network",
    "_not_bool",
    "_origin",
    "_path",
    "_port",
    "_RESERVED_HEADERS",
    "_retention",
    "_route_conflicts",
    "_ROUTE_NAME",
    "_scope_list",
    "_Section",
    "_SECTIONS",
    "_SideListenSettings",
    "_SPIKE_DIMENSIONS",
    "_tls_shorthand",
    "_UNIT_SECONDS",
    "_unreadable",
    "_url_shorthand",
    "_websocket_shorthand",
    "AdminListenSettings",
    "AdminSettings",
    "AlertSettings",
    "ApiKeySettings",
    "AssertionSettings",
    "AuditSettings",
    "AuthMethod",
    "BruteForceSettings",
    "ByteSize",
    "ClaimValue",
    "CorsSettings",
    "Count",
    "CredentialStuffingSettings",
    "DemoSettings",
    "DenialSpikeSettings",
    "DetectorSettings",
    "Duration",
    "DurationError",
    "expand_shorthand",
    "ExternalAlgorithm",
    "FilePath",
    "ForwardAuthSettings",
    "HTTP_METHODS",
    "IdentityHeaderSettings",
    "IntrospectionSettings",
    "IpAccessSettings",
    "IpFailuresSettings",
    "LEAK_REPORT_SECRET_MIN",
    "Limit",
    "ListenSettings",
    "LoadSheddingSettings",
    "LoggingSettings",
    "LoginThrottleSettings",
    "LOOPBACK_HOSTS",
    "MAX_DURATION",
    "MetricsListenSettings",
    "MetricsSettings",
    "Network",
    "NewNetworkSettings",
    "parse_duration",
    "Port",
    "PositiveDuration",
    "RateLimitSettings",
    "RequestLimitSettings",
    "RiskTighteningSettings",
    "RouteJwtSettings",
    "RouteLimit",
    "RouteMatch",
    "RouteSettings",
    "RouteWebSocket",
    "Seconds",
    "SecretsSettings",
    "ServerSettings",
    "Settings",
    "SHARED_SCHEMES",
    "SharedSettings",
    "SHORTHANDS",
    "SigningKeySettings",
    "SpikeDimension",
    "STORAGE_SCHEMES",
    "StorageSettings",
    "TLSSettings",
    "TokenReuseSettings",
    "TokenSettings",
    "TracingSettings",
    "TrustedIssuerSettings",
    "UpstreamHealth",
    "WebhookDeliverySettings",
    "WebhookSettings",
]

HOMES = [
    "bastion.settings.alerts",
    "bastion.settings.apikeys",
    "bastion.settings.config",
    "bastion.settings.fields",
    "bastion.settings.gateway",
    "bastion.settings.limits",
    "bastion.settings.monitoring",
    "bastion.settings.oauth",
    "bastion.settings.rates",
    "bastion.settings.routes",
    "bastion.settings.server",
]


def test_every_name_still_imports_from_models() -> None:
    missing = [name for name in NAMES if not hasattr(models, name)]
    assert missing == []


def test_each_name_is_its_homes_object() -> None:
    homes = [importlib.import_module(name) for name in HOMES]
    for name in NAMES:
        owners = [
            home.__name__ for home in homes if getattr(home, name, None) is getattr(models, name)
        ]
        assert owners, name


def test_models_defines_nothing_itself() -> None:
    defined_here = [
        name
        for name, value in vars(models).items()
        if (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == models.__name__
    ]
    assert defined_here == []
    assert sorted(models.__all__) == sorted(NAMES)
