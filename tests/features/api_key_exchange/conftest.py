"""A real bastion Runtime with API keys and the RFC 8693 exchange wired in.

``wire_api_keys`` is exactly what ``Runtime.open`` needs to do for this feature
(the lead moves it there); until then the tests apply it to an opened runtime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.apikeys import ApiKeyService
from bastion.http.endpoints import create_full_app
from bastion.oauth.tokens import AccessTokenVerifier, TokenIssuer
from bastion.protocol import rfc8693
from bastion.protocol.rfc6749.grants import client_credentials
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.runtime import Runtime
from bastion.settings import Settings
from bastion.storage import NotFoundError


def wire_api_keys(runtime: Runtime) -> None:
    """Add ``api_keys``, the exchange grant and API-key-aware token verification."""
    settings, db = runtime.settings, runtime.db
    api_keys = ApiKeyService(db, settings, runtime.shared)
    issuer = TokenIssuer(runtime.signing_keys.current)
    token_endpoint = TokenEndpoint(
        {
            "client_credentials": client_credentials.handler(
                issuer=settings.issuer_url,
                settings_tokens=settings.tokens,
                issue_token=issuer.issue,
            ),
            rfc8693.GRANT_TYPE: rfc8693.exchange_grant(
                issuer=settings.issuer_url,
                api_keys=api_keys,
                issue_token=issuer.issue,
                settings_tokens=settings.tokens,
            ),
        }
    )

    async def client_is_active(client_id: str) -> bool:
        try:
            client = await db.clients.get(client_id)
        except NotFoundError:
            return False
        return not client.disabled

    access_tokens = AccessTokenVerifier(
        runtime.signing_keys.public_key_set,
        issuer=settings.issuer_url,
        shared=runtime.shared,
        client_is_active=rfc8693.with_api_keys(client_is_active, api_keys),
        leeway=settings.tokens.leeway,
        max_lifetime=settings.tokens.max_access_token_ttl,
    )
    runtime.api_keys = api_keys  # type: ignore[attr-defined]
    runtime.token_endpoint = token_endpoint
    runtime.access_tokens = access_tokens


def make_settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "tls": {"mode": "off"},
            "trusted_proxies": ["10.9.9.9"],
            **extra,
        }
    )


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(make_settings(tmp_path), announce=lambda line: None)
    try:
        if getattr(rt, "api_keys", None) is None:
            wire_api_keys(rt)
        yield rt
    finally:
        await rt.close()


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_full_app(runtime)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 4000)),
        base_url="https://testserver",
    ) as client:
        yield client
