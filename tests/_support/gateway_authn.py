"""Credentials for black-box authentication tests against a running ``bastion serve``.

What the gateway's authentication tests need beside :mod:`_support.gateway_server`:

- :class:`Keys` manages the API keys of a served configuration with the real
  ``ApiKeyService`` on its database (as the CLI does), and waits until the server has
  followed each change (its change feed), so the next request sees it;
- :func:`serve_configured` serves a configuration whose routes need its other settings
  (``migrated_config`` migrates the routes alone);
- :func:`own_signing_key` is bastion's own active token-signing key, read from the served
  database with the configuration's master keyring: tokens of any claims, signed as
  bastion signs them;
- :func:`own_client` makes an OAuth client (bastion's own tokens name an existing one);
- :func:`refused` checks a refusal: its problem document and its ``gateway.denied`` row;
- :func:`upstream_saw` is what the echo upstream answered it received (its JSON body).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from _support import BastionProcess, run_cli
from _support.gateway_server import GatewayServer, RawResponse
from _support.native import feed_changes, until_feed_past
from bastion.apikeys import ApiKeyService, ApiKeySpec
from bastion.crypto import SigningKeyPair
from bastion.storage import Database
from bastion.storage.shared import MemorySharedState

__all__ = [
    "Keys",
    "own_client",
    "own_signing_key",
    "refused",
    "refused_all",
    "serve_configured",
    "upstream_saw",
]

T = TypeVar("T")


def _settings(config: Path) -> Any:
    """The served settings as the server (whose working directory is the config's) reads
    them: no ``BASTION_*`` variable of the test process, ``data_dir`` beside the file."""
    from bastion.settings.loader import load_settings

    settings = load_settings(config, environ={})
    if not settings.data_dir.is_absolute():
        settings = settings.model_copy(update={"data_dir": config.parent / settings.data_dir})
    return settings


class Keys:
    """The API keys of ``server``'s database, changed as ``bastion keys`` changes them."""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    def _run(self, action: Callable[[ApiKeyService], Awaitable[T]]) -> T:
        async def run() -> T:
            db = await Database.connect(f"sqlite:///{self.server.config.parent}/bastion.db")
            shared = MemorySharedState()
            try:
                return await action(ApiKeyService(db, _settings(self.server.config), shared))
            finally:
                await shared.close()
                await db.close()

        before = feed_changes(self.server.url)
        result = asyncio.run(run())
        until_feed_past(self.server.url, before)
        return result

    def create(self, **spec: Any) -> tuple[str, str]:
        """A new key: ``(id, key)``."""
        spec.setdefault("name", "test key")

        async def create(service: ApiKeyService) -> tuple[str, str]:
            record, key = await service.create(ApiKeySpec(**spec))
            return record.id, key

        return self._run(create)

    def revoke(self, key_id: str) -> None:
        self._run(lambda s: s.revoke(key_id))

    def disable(self, key_id: str) -> None:
        self._run(lambda s: s.disable(key_id))

    def delete(self, key_id: str) -> None:
        self._run(lambda s: s.delete(key_id))

    def update(self, key_id: str, **changes: Any) -> None:
        self._run(lambda s: s.update(key_id, **changes))

    def rotate(self, key_id: str, grace: float) -> str:
        """The new key of ``key_id`` rotated with ``grace`` seconds for the old one."""

        async def rotate(service: ApiKeyService) -> str:
            _, key = await service.rotate(key_id, grace=grace)
            return key

        return self._run(rotate)


@contextlib.contextmanager
def serve_configured(directory: Path, routes: str, settings: str) -> Iterator[GatewayServer]:
    """Like :func:`_support.gateway_server.serve_gateway`, for routes that need their
    ``settings`` to be valid (``introspection``, ``trusted_issuers``): the whole file is
    written before it is migrated."""
    config = directory / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{directory}/bastion.db\n{settings.rstrip()}\nroutes:\n{routes}"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=directory)
    assert migrated.returncode == 0, migrated.stderr
    with BastionProcess("-c", str(config), cwd=directory) as proc:
        yield GatewayServer(proc, config)


def own_signing_key(server: GatewayServer, alg: str | None = None) -> SigningKeyPair:
    """Bastion's active token-signing key of ``alg`` (default: ``signing_keys.algorithm``),
    private part included (from its database)."""
    from bastion.oauth.signing_keys import SigningKeyManager
    from bastion.runtime import open_keyring

    settings = _settings(server.config)

    async def read() -> SigningKeyPair:
        db = await Database.connect(f"sqlite:///{server.config.parent}/bastion.db")
        shared = MemorySharedState()
        try:
            manager = SigningKeyManager(db, open_keyring(settings), settings, shared)
            await manager.reload()
            return manager.current(alg)
        finally:
            await shared.close()
            await db.close()

    return asyncio.run(read())


def own_client(server: GatewayServer) -> dict[str, Any]:
    """A new OAuth client of ``server`` (client credentials), made with the CLI: bastion's
    own tokens verify only for a client that exists and is enabled."""
    import uuid

    name = f"svc-{uuid.uuid4().hex[:6]}"
    return dict(server.cli("clients", "create", name, "--grant", "client_credentials"))


def upstream_saw(response: httpx.Response) -> dict[str, str]:
    """The request headers the echo upstream received (names lower-cased)."""
    assert response.status_code == 200, response.text
    return {k.lower(): v for k, v in response.json()["headers"].items()}


def refused(
    server: GatewayServer,
    response: httpx.Response | RawResponse,
    status: int,
    reason: str,
    route: str,
    step: str = "authenticate",
) -> Any:
    """``response`` (parsed by httpx, or off the wire) is the problem ``status`` /
    ``reason``, recorded as one ``gateway.denied`` row of ``route`` by ``step``; the row."""
    return refused_all(server, [response], status, reason, route, step)[0]


def refused_all(
    server: GatewayServer,
    responses: Sequence[httpx.Response | RawResponse],
    status: int,
    reason: str,
    route: str,
    step: str = "authenticate",
) -> list[Any]:
    """:func:`refused` for each of ``responses``, waiting once for all their audit rows (the
    writer stores in batches about a second apart: one wait per response adds up)."""
    ids: list[str] = []
    for response in responses:
        if isinstance(response, RawResponse):
            code, content_type = response.status, response.header("content-type")
            rid = response.request_id
        else:
            code, content_type = response.status_code, response.headers["content-type"]
            rid = response.headers["x-request-id"]
        document = response.json()
        assert code == status, document
        assert content_type == "application/problem+json"
        assert (document["status"], document["reason"]) == (status, reason), document
        ids.append(rid)
    rows = server.denied(ids)
    outcome = "denied" if status < 500 else "failure"  # a 5xx is the gateway's failure
    for rid in ids:
        row = rows[rid]
        assert (row.outcome, row.reason, row.route) == (outcome, reason, route), row
        assert (row.data["status"], row.data["step"]) == (status, step), row.data
    return [rows[rid] for rid in ids]
