"""Fixtures the native-front modules share, one per module (as is each module's server).

- ``echo_module``: the module's echo upstream (:class:`_support.EchoThread`);
- ``idp``: the module's identity provider (``gateway.idp_support.FakeIdP``: an RFC 7662
  endpoint and a JWKS issuer), in its thread.

A module that needs a fresh one per test defines its own (the root conftest's ``echo`` is one
per test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread
from gateway.idp_support import FakeIdP, IdPThread


@pytest.fixture(scope="module")
def echo_module() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdP]:
    thread = IdPThread()
    try:
        yield thread.idp
    finally:
        thread.close()
