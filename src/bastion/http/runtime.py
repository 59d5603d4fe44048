"""What bastion's HTTP endpoints read from the runtime: one typed view of it.

:class:`ControlPlane` names every component an endpoint group reads;
:class:`bastion.runtime.Runtime` (the composition root, which builds each of
them once) satisfies it. It is a Protocol, not the class, so that this package
does not import the module that assembles it (the runtime mounts the HTTP
endpoints, not the other way round), and so that tests may hand an endpoint
group a stand-in with only what that group reads.
"""

from __future__ import annotations

from typing import Protocol

from bastion.apikeys import ApiKeyService
from bastion.audit.events import Auditor
from bastion.gateway.control import GatewayControl
from bastion.oauth.clients import ClientService
from bastion.oauth.signing_keys import SigningKeyManager
from bastion.oauth.tokens import AccessTokenVerifier
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.ratelimit.login import LoginThrottle
from bastion.settings import Settings
from bastion.storage import Database
from bastion.storage.feed import ChangeFeedFollower
from bastion.storage.shared import SharedState

__all__ = ["ControlPlane", "MetricsRenderer"]


class MetricsRenderer(Protocol):
    """The Prometheus registry's exposition (``bastion.observability.metrics.Metrics``)."""

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """``(body, content type)`` for the scrape's ``Accept`` header."""
        ...


class ControlPlane(Protocol):
    """The runtime as the HTTP endpoints see it (read-only; see the module docstring)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def shared(self) -> SharedState: ...
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
    def client_throttle(self) -> LoginThrottle | None: ...
