"""bastion.settings: the typed configuration, its loader and its production checks.

Sources, lowest to highest precedence: model defaults < YAML file (``BASTION_CONFIG``)
< ``BASTION_*`` environment variables; ``env:NAME`` strings are replaced by the
variable ``NAME``. Everything is validated at load and every problem is reported
as one line of a :class:`SettingsError` that names the key and the fix.

The models live by area (``server``, ``routes``, ``gateway``, ``oauth``, ``apikeys``,
``limits``, ``monitoring``, ``alerts``; :class:`Settings` in ``config``); no module
here imports from ``ratelimit/``, ``audit/`` or ``gateway/``.
"""

from bastion.settings._values import redact_url
from bastion.settings.checks import development_defaults, production_problems
from bastion.settings.config import Settings
from bastion.settings.errors import SettingsError
from bastion.settings.loader import load_settings
from bastion.settings.routes import HTTP_METHODS, AuthMethod, RouteMatch, RouteSettings
from bastion.settings.server import (
    DemoSettings,
    ListenSettings,
    LoggingSettings,
    SecretsSettings,
    ServerSettings,
    SharedSettings,
    StorageSettings,
    TLSSettings,
)

__all__ = [
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
