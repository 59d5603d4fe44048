"""Helpers for the settings tests: write a config file, load it, collect error lines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from bastion.settings import Settings, SettingsError, load_settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """``load(yaml_text=None, env=None)``: load settings from a temporary file and ``env``."""

    def _load(text: str | None = None, env: Mapping[str, str] | None = None) -> Settings:
        path = None
        if text is not None:
            path = tmp_path / "bastion.yaml"
            path.write_text(text, encoding="utf-8")
        return load_settings(path, dict(env or {}))

    return _load


@pytest.fixture
def errors(load: Load) -> Errors:
    """``errors(yaml_text=None, env=None)``: the error lines the configuration produces."""

    def _errors(text: str | None = None, env: Mapping[str, str] | None = None) -> list[str]:
        with pytest.raises(SettingsError) as info:
            load(text, env)
        assert info.value.code == "invalid_config"
        assert info.value.status == 500
        return info.value.errors

    return _errors
