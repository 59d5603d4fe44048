"""The public surface of bastion.settings is small and pinned."""

from __future__ import annotations

import bastion.settings


def test_exported_members() -> None:
    assert sorted(bastion.settings.__all__) == sorted(
        [
            "HTTP_METHODS",
            "AuthMethod",
            "DemoSettings",
            "ListenSettings",
            "LoggingSettings",
            "RouteMatch",
            "RouteSettings",
            "SecretsSettings",
            "ServerSettings",
            "Settings",
            "SettingsError",
            "SharedSettings",
            "StorageSettings",
            "TLSSettings",
            "development_defaults",
            "load_settings",
            "production_problems",
            "redact_url",
        ]
    )
    for name in bastion.settings.__all__:
        assert getattr(bastion.settings, name) is not None


def test_settings_error_shape() -> None:
    from bastion.errors import BastionError
    from bastion.settings import SettingsError

    one = SettingsError("listen.port: 0 is not a valid port — use a number from 1 to 65535")
    assert isinstance(one, BastionError)
    assert (one.code, one.status) == ("invalid_config", 500)
    assert one.errors == [one.detail]
    many = SettingsError(["a: first", "b: second", "c: third"])
    assert many.detail == "a: first (and 2 more)"
    assert many.errors == ["a: first", "b: second", "c: third"]
    assert many.to_problem()["reason"] == "invalid_config"
