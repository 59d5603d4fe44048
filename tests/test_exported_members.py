"""Pins bastion's public names: adding or removing one must be a deliberate change."""

from __future__ import annotations

import bastion


def test_public_names_are_pinned() -> None:
    assert sorted(bastion.__all__) == [
        "BastionError",
        "Runtime",
        "Settings",
        "__version__",
        "create_app",
        "load_settings",
    ]


def test_every_public_name_resolves() -> None:
    for name in bastion.__all__:
        assert getattr(bastion, name) is not None


def test_unknown_attribute_raises() -> None:
    import pytest

    with pytest.raises(AttributeError):
        bastion.no_such_thing  # noqa: B018
