"""More black-box gateway helpers, next to :mod:`_support.gateway_server`.

- :func:`serve_edge`: ``bastion serve`` of routes and settings migrated together (routes
  may name what the settings declare, e.g. a trusted issuer); :func:`serve_on_redis`: the
  same with ``shared`` on Redis behind a :class:`TCPProxy` a test cuts (an outage);
- :func:`served_with`: a module fixture serving routes and settings that name other
  module fixtures (``{echo}``, ``{idp}``: the echo upstream's and the IdP's URLs);
- a real identity provider (:class:`~gateway.idp_support.IdPThread`) as a trusted issuer:
  :func:`issuer_settings` and :func:`idp_token` mint access tokens with any subject,
  client and scopes — the identities in-process tests made up with a fake authenticator;
- :func:`api_key`: a real API key made with ``bastion keys create``;
- :func:`forwarded`: the client address a request claims through a trusted proxy
  (:data:`PROXY`, the loopback address tests send from as that proxy);
- :func:`metric`: every sample of one metric family on /metrics;
- :func:`problem`: a problem+json answer's status, reason and detail.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from _support import BastionProcess, EchoThread, TCPProxy, run_cli, tcp_proxy
from _support.gateway_server import GatewayServer, RawResponse
from bastion.crypto import sign_jwt

__all__ = [
    "AUDIENCE",
    "PROXY",
    "api_key",
    "bearer",
    "forwarded",
    "idp_token",
    "issuer_settings",
    "metric",
    "problem",
    "serve_edge",
    "serve_on_redis",
    "served_with",
]

#: The loopback address tests send from as a trusted proxy (``trusted_proxies: [PROXY]``;
#: 127.0.0.1 stays an ordinary client, to which /metrics answers).
PROXY = "127.0.0.2"

#: The audience of the IdP's tokens (the trusted issuer's).
AUDIENCE = "https://api.gw.test"


def issuer_settings(idp_url: str) -> str:
    """The top-level setting trusting the IdP at ``idp_url`` for :data:`AUDIENCE`."""
    return f"trusted_issuers:\n  - issuer: {idp_url}\n    audiences: [{AUDIENCE}]\n"


def idp_token(
    idp: Any, sub: str, client_id: str | None = None, scope: str = "", **extra: Any
) -> str:
    """An access token of the IdP (its current key): ``sub``, ``client_id``, ``scope``."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": idp.url,
        "sub": sub,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    if client_id is not None:
        claims["client_id"] = client_id
    if scope:
        claims["scope"] = scope
    claims.update(extra)
    return sign_jwt(claims, idp.key, typ="at+jwt")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def api_key(server: GatewayServer, name: str, *args: str) -> tuple[str, str]:
    """``bastion keys create NAME ARGS``: (the key, its id)."""
    made = server.cli("keys", "create", name, *args)
    return str(made["key"]), str(made["id"])


def forwarded(ip: str) -> dict[str, str]:
    """``X-Forwarded-For: ip`` (the client address, from a trusted proxy)."""
    return {"X-Forwarded-For": ip}


def metric(server: GatewayServer, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric ``name`` on the server's /metrics, by its sorted labels."""
    scrape = httpx.get(f"{server.url}/metrics", verify=False, timeout=10)
    assert scrape.status_code == 200
    out: dict[tuple[tuple[str, str], ...], float] = {}
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? ([0-9.e+-]+|\+Inf)$", re.M)
    for labels, value in pattern.findall(scrape.text):
        out[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))] = float(value)
    return out


def problem(response: httpx.Response | RawResponse) -> tuple[int, str, str]:
    """(status, reason, detail) of a problem+json answer."""
    if isinstance(response, RawResponse):
        assert response.header("content-type") == "application/problem+json"
        doc = response.json()
        assert doc["status"] == response.status
    else:
        assert response.headers["content-type"] == "application/problem+json"
        doc = response.json()
        assert doc["status"] == response.status_code
    return doc["status"], doc["reason"], doc["detail"]


@contextlib.contextmanager
def serve_edge(directory: Path, routes: str, settings: str = "") -> Iterator[GatewayServer]:
    """``bastion serve`` of ``routes`` (YAML list items) and the other top-level
    ``settings``, migrated with both (unlike ``serve_gateway``, which migrates before it
    adds the settings, so routes may name what the settings declare: trusted issuers)."""
    config = directory / "bastion.yaml"
    config.write_text(
        settings.rstrip("\n") + "\n" + f"storage: sqlite:///{directory}/bastion.db\n"
        f"routes:\n{routes}"
    )
    migrated = run_cli("migrate", "-c", str(config), cwd=directory)
    assert migrated.returncode == 0, migrated.stderr
    with BastionProcess("-c", str(config), cwd=directory) as proc:
        yield GatewayServer(proc, config)


@contextlib.contextmanager
def serve_on_redis(
    directory: Path, routes: str, settings: str, redis_url: str
) -> Iterator[tuple[GatewayServer, TCPProxy, str]]:
    """:func:`serve_edge` with ``shared`` on the Redis at ``redis_url`` reached through a
    :class:`TCPProxy` (``cut()`` is an outage), under a key prefix of its own:
    (the server, the proxy, the prefix)."""
    target = urlsplit(redis_url)
    prefix = f"bastion-test:{secrets.token_hex(6)}:"
    with tcp_proxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}"
        shared = f"shared: {{url: '{url}', key_prefix: '{prefix}'}}\n"
        with serve_edge(directory, routes, shared + settings) as server:
            yield server, proxy, prefix


def served_with(
    routes: str,
    settings: str = "",
    *,
    idp: bool = False,
    before: Callable[[GatewayServer], None] | None = None,
) -> Any:
    """A module-scoped fixture yielding one :class:`GatewayServer` of ``routes`` and
    ``settings``, in which ``{echo}`` is the module's ``echo_upstream`` URL and ``{idp}``
    the module's ``idp`` URL (``idp=True``: the issuer is trusted as well)."""

    @pytest.fixture(scope="module")
    def served(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[GatewayServer]:
        text, extra = routes, settings
        if "{echo}" in text:
            echo: EchoThread = request.getfixturevalue("echo_upstream")
            text = text.replace("{echo}", echo.server.url)
        if idp:
            issuer = request.getfixturevalue("idp")
            text = text.replace("{idp}", issuer.url)
            extra = issuer_settings(issuer.url) + extra.replace("{idp}", issuer.url)
        with serve_edge(tmp_path_factory.mktemp("gateway"), text, extra) as server:
            if before is not None:
                before(server)
            yield server

    return served
