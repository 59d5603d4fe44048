"""Stand-ins for the runtime the HTTP app is built on (settings, db, shared state, gateway).

Imported by the tests of tests/http (this directory is on sys.path under pytest's
default import mode; the module name avoids clashing with the stdlib ``http``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from bastion.runtime import Runtime as BastionRuntime
from bastion.settings import Settings


class Ping:
    """A dependency stand-in: ``ping`` raises ``error`` (if any) after ``delay`` seconds."""

    def __init__(self, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.error = error
        self.delay = delay
        self.calls = 0

    async def ping(self) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error

    check = ping  # the change feed's readiness check has this name


def make_settings(port: int = 0, graceful_timeout: float = 5.0) -> Any:
    return SimpleNamespace(
        server=SimpleNamespace(
            graceful_timeout=graceful_timeout,
            backlog=128,
            access_log=False,
            threads=1,
        ),
        listen=SimpleNamespace(host="127.0.0.1", port=port),
        tls=SimpleNamespace(min_version="1.2", client_ca=None),
        request_limits=SimpleNamespace(max_headers=100, max_header_bytes=32 * 1024),
        trusted_proxies=[],
        issuer_url="https://localhost",
        forward_auth=SimpleNamespace(headers="nginx"),
    )


async def echo_gateway(scope: Any, receive: Any, send: Any) -> None:
    """A gateway stand-in answering 200 JSON naming the path it saw."""
    body = b'{"gateway":"' + scope["path"].encode() + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Runtime(SimpleNamespace):
    """A runtime stand-in with the attributes ``create_app`` reads."""


async def _no_shutdown() -> None:
    return None


def make_runtime(
    gateway: Callable[..., Any] = echo_gateway,
    db: Ping | None = None,
    shared: Ping | None = None,
    **kwargs: Any,
) -> Runtime:
    """A runtime stand-in; with ``startup``, also a ``shutdown`` (a no-op unless given), as
    the ASGI lifespan calls both or neither (``bastion.http.app.HasLifespan``)."""
    if "startup" in kwargs:
        kwargs.setdefault("shutdown", _no_shutdown)
    return Runtime(
        settings=kwargs.pop("settings", make_settings()),
        db=db or Ping(),
        shared=shared or Ping(),
        gateway=gateway,
        node_id="test-node",
        changes=kwargs.pop("changes", Ping()),
        **kwargs,
    )


#: The runtime's services the admin API and the leak-report endpoint read when it has them
#: (``bastion.http.runtime.AdminPlane``); a stand-in that leaves one out has it as None.
ADMIN_SERVICES = ("access_tokens", "auditor", "control", "clients", "api_keys")


def admin_runtime(**members: Any) -> Runtime:
    """A runtime stand-in for the admin API and the leak-report endpoint: ``members``, and
    None for each of :data:`ADMIN_SERVICES` not among them."""
    return Runtime(**({name: None for name in ADMIN_SERVICES} | members))


def client_for(app: Any, scheme: str = "https") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"{scheme}://testserver"
    )


@contextlib.asynccontextmanager
async def real_runtime(tmp_path: Path, **sections: Any) -> AsyncIterator[BastionRuntime]:
    """A real runtime on SQLite under ``tmp_path``, plain HTTP behind a trusted proxy
    (``10.0.0.1``), with ``sections`` of settings on top; closed afterwards."""
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path / "data"),
            "tls": {"mode": "off"},
            "trusted_proxies": ["10.0.0.1"],
            **sections,
        }
    )
    runtime = await BastionRuntime.open(settings, announce=lambda line: None)
    try:
        yield runtime
    finally:
        await runtime.close()
