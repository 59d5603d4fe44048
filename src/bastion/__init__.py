"""bastion — a self-hosted API security gateway and OAuth 2.0 / OpenID Connect provider.

The public surface is deliberately small (pinned by ``tests/test_exported_members.py``):

- :data:`__version__`
- :class:`BastionError` — root of every deliberate error (machine ``code``, HTTP ``status``)
- :class:`Settings` and :func:`load_settings` — typed, validated configuration
- :class:`Runtime` — every long-lived component, built from settings
- :func:`create_app` — the ASGI application for a runtime

Heavy modules are imported on first use so ``bastion --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError

__version__ = "0.1.0"

__all__ = ["BastionError", "Runtime", "Settings", "__version__", "create_app", "load_settings"]

_LAZY = {
    "Settings": "bastion.settings",
    "load_settings": "bastion.settings",
    "Runtime": "bastion.runtime",
    "create_app": "bastion.http.app",
}

if TYPE_CHECKING:
    from bastion.http.app import create_app
    from bastion.runtime import Runtime
    from bastion.settings import Settings, load_settings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
