"""A real bastion Runtime (API keys and the RFC 8693 exchange wired in by ``Runtime.open``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.http.endpoints import create_full_app
from bastion.runtime import Runtime
from bastion.settings import Settings


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
