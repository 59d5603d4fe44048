"""Fixtures for the HTTP tests: a stand-in runtime and an in-process client for create_app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.http.app import create_app

# The helpers live next to this file; pytest puts this directory on sys.path only
# when it imports the first test module, after this conftest.
sys.path.insert(0, str(Path(__file__).parent))
from http_support import Runtime, client_for, make_runtime


@pytest.fixture
def runtime() -> Runtime:
    return make_runtime()


@pytest.fixture
async def client(runtime: Runtime) -> Any:
    async with client_for(create_app(runtime)) as c:
        yield c
