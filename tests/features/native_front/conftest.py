"""The native-front features' echo upstream (helpers: ``_support.native``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support import EchoThread


@pytest.fixture
def echo() -> Iterator[EchoThread]:
    thread = EchoThread()
    try:
        yield thread
    finally:
        thread.close()
