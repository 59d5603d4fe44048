from __future__ import annotations

from collections.abc import Iterator

import pytest

from _support.otlp import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()
