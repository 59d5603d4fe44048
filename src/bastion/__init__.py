"""bastion — a self-hosted API security gateway and OAuth 2.0 / OpenID Connect provider.

The public surface is deliberately small (pinned by ``tests/test_exported_members.py``):

- :data:`__version__`
- :class:`BastionError` — root of every deliberate error (machine ``code``, HTTP ``status``)
- :class:`Settings` and :func:`load_settings` — typed, validated configuration
- :class:`Runtime` — every long-lived component, built from settings
- :func:`create_app` — the ASGI application for a runtime, with every endpoint

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
    "create_app": "bastion.http.endpoints",
}

if TYPE_CHECKING:  # heavy modules load on first use (__getattr__ below)
    from bastion.http.endpoints import create_full_app as create_app
    from bastion.runtime import Runtime
    from bastion.settings import Settings, load_settings


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    import importlib

    attribute = "create_full_app" if name == "create_app" else name
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted(__all__)
