"""What bastion's HTTP endpoints read from the runtime: one typed view of it.

:class:`ControlPlane` names every component an endpoint group reads;
:class:`bastion.runtime.Runtime` (the composition root, which builds each of
them once) satisfies it. It is a Protocol, not the class, so that this package
does not import the module that assembles it (the runtime mounts the HTTP
endpoints, not the other way round), and so that tests may hand an endpoint
group a stand-in with only what that group reads.

:class:`AdminPlane` is the part the admin API and the leak-report endpoint
read: the settings and stores always, the ready services where the runtime has
them (``None``: the endpoint builds its own over the stores, or goes without).
Every :class:`ControlPlane` is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from bastion.apikeys import ApiKeyService
from bastion.audit.events import Auditor
from bastion.crypto import Keyring
from bastion.gateway.control import GatewayControl
from bastion.interaction import SessionManager
from bastion.oauth.authorization_codes import AuthorizationCodeService
from bastion.oauth.clients import ClientService
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.oauth.signing_keys import SigningKeyManager
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.ratelimit.login import LoginThrottle
from bastion.settings import Settings
from bastion.storage import Database
from bastion.storage.feed import ChangeFeedFollower
from bastion.storage.shared import SharedState

__all__ = ["AdminPlane", "ControlPlane", "MetricsRenderer", "TokenVerifier", "ready_service"]

S = TypeVar("S")


class MetricsRenderer(Protocol):
    """The Prometheus registry's exposition (``bastion.observability.metrics.Metrics``)."""

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """``(body, content type)`` for the scrape's ``Accept`` header."""
        ...


class TokenVerifier(Protocol):
    """Verifies bastion's own access tokens (``bastion.oauth.tokens.AccessTokenVerifier``)."""

    async def verify(self, token: str, *, audience: str | None = None) -> Mapping[str, Any]:
        """The claims of a valid token for ``audience``; raises ``InvalidTokenError``."""
        ...


class AdminPlane(Protocol):
    """The runtime as the admin API and the leak-report endpoint see it (see the module
    docstring); a member that is ``None`` is one a test stand-in did not bring."""

    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def shared(self) -> SharedState: ...
    @property
    def access_tokens(self) -> TokenVerifier | None: ...
    @property
    def auditor(self) -> Auditor | None: ...
    @property
    def control(self) -> GatewayControl | None: ...
    @property
    def clients(self) -> ClientService | None: ...
    @property
    def api_keys(self) -> ApiKeyService | None: ...


class ControlPlane(AdminPlane, Protocol):
    """The runtime as the HTTP endpoints see it (read-only; see the module docstring)."""

    @property
    def node_id(self) -> str: ...
    @property
    def changes(self) -> ChangeFeedFollower: ...
    @property
    def auditor(self) -> Auditor: ...
    @property
    def metrics(self) -> MetricsRenderer | None: ...
    @property
    def control(self) -> GatewayControl: ...
    @property
    def clients(self) -> ClientService: ...
    @property
    def api_keys(self) -> ApiKeyService: ...
    @property
    def signing_keys(self) -> SigningKeyManager: ...
    @property
    def access_tokens(self) -> AccessTokenVerifier: ...
    @property
    def token_endpoint(self) -> TokenEndpoint: ...
    @property
    def refresh_tokens(self) -> RefreshTokenService: ...
    @property
    def authorization_codes(self) -> AuthorizationCodeService: ...
    @property
    def client_throttle(self) -> LoginThrottle | None: ...
    @property
    def keyring(self) -> Keyring: ...
    @property
    def sessions(self) -> SessionManager | None: ...
    @property
    def login_throttle(self) -> LoginThrottle | None: ...


def ready_service(
    runtime: AdminPlane,
    ready: Callable[[AdminPlane], S | None],
    build: Callable[[Database, Settings, SharedState], S],
) -> Callable[[], S]:
    """The runtime's ready service (``ready(runtime)``), else one ``build`` makes over its
    stores; looked up the first time it is needed, then kept (a test stand-in may bring
    only the stores)."""
    found: list[S] = []

    def service() -> S:
        if not found:
            existing = ready(runtime)
            if existing is None:
                existing = build(runtime.db, runtime.settings, runtime.shared)
            found.append(existing)
        return found[0]

    return service
