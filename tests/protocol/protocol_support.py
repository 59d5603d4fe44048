"""Helpers of the protocol tests: an in-memory client registry and request builders."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote_plus, urlencode

from bastion.protocol.rfc6749.errors import InvalidClientError
from bastion.protocol.rfc6749.requests import OAuthRequest
from bastion.storage.models import Client

ISSUER = "https://auth.example.com"
TOKEN_ENDPOINT = ISSUER + "/oauth2/token"


@dataclass
class MemoryClients:
    """A stand-in for ClientService: clients by id, one secret each (digest compared)."""

    clients: dict[str, Client] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def add(self, client: Client, secret: str | None = None) -> Client:
        self.clients[client.client_id] = client
        if secret is not None:
            self.secrets[client.client_id] = hashlib.sha256(secret.encode()).hexdigest()
        return client

    def disable(self, client_id: str) -> None:
        self.clients[client_id] = replace(self.clients[client_id], disabled=True)

    async def find_active(self, client_id: str) -> Client | None:
        client = self.clients.get(client_id)
        return None if client is None or client.disabled else client

    async def authenticate_secret(self, client_id: str, secret: str) -> Client:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        expected = self.secrets.get(client_id, "0" * 64)
        client = self.clients.get(client_id)
        if not hmac.compare_digest(digest, expected) or client is None:
            raise InvalidClientError(reason="bad_secret" if client else "unknown_client")
        if client.disabled:
            raise InvalidClientError(reason="client_disabled")
        return client


def confidential(client_id: str = "svc", **changes: Any) -> Client:
    values: dict[str, Any] = {
        "client_id": client_id,
        "client_type": "confidential",
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ("client_credentials",),
        "scopes": ("orders:read", "orders:write"),
        "audiences": ("https://api.example.com/orders", "https://api.example.com/users"),
    }
    values.update(changes)
    return Client(**values)


def form_request(
    form: Mapping[str, str | Iterable[str]] | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
    query: str = "",
) -> OAuthRequest:
    """A POST with a urlencoded body built from ``form`` (iterables repeat a parameter)."""
    pairs: list[tuple[str, str]] = []
    for name, value in (form or {}).items():
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, item) for item in value)
    body = urlencode(pairs).encode()
    all_headers = [("Content-Type", "application/x-www-form-urlencoded"), *headers]
    return OAuthRequest.from_http("POST", all_headers, body, query)


def basic(client_id: str, secret: str) -> tuple[str, str]:
    """An RFC 6749 §2.3.1 Authorization header (form-urlencoded halves)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return ("Authorization", "Basic " + base64.b64encode(raw).decode())


def raw_basic(raw: bytes) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(raw).decode())


@dataclass
class Authenticator:
    """A token endpoint's ``authenticate`` stand-in: returns ``client`` (``None``: raises
    ``invalid_client``) and counts its calls."""

    client: Client | None = None
    calls: int = 0

    async def __call__(self, request: OAuthRequest) -> Client:
        self.calls += 1
        if self.client is None:
            raise InvalidClientError(reason="unknown_client")
        return self.client


class RecordingSigner:
    """An ``issue_token`` stand-in: records the claims it signs, returns ``"access-token"``."""

    def __init__(self) -> None:
        self.issued: list[dict[str, Any]] = []

    async def __call__(self, claims: dict[str, Any]) -> str:
        self.issued.append(claims)
        return "access-token"
