"""The echo upstream the ``session`` route tests proxy to (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()
