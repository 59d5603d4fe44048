"""What keeps parallel test workers apart: names, Redis database numbers and port ranges.

``make test`` runs the suite in pytest-xdist worker processes, each named by the
``PYTEST_XDIST_WORKER`` environment variable (``gw0``, ``gw1``, …; there are
``PYTEST_XDIST_WORKER_COUNT``). A serial run has neither and is the worker ``main``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

#: This process's worker: "gw0", "gw1", … under pytest-xdist, "main" in a serial run.
WORKER = os.environ.get("PYTEST_XDIST_WORKER") or "main"

#: Ports :func:`_support.free_port` hands out: below Linux's ephemeral range (32768-60999),
#: where bind(0) and outgoing connections take theirs, so a port picked here and bound
#: moments later by a server is not taken meanwhile by another process's listener or by a
#: connection's own end.
PORTS = range(20000, 32768)


def _index(worker: str) -> int | None:
    """``N`` of the worker ``gwN``; None for ``main``."""
    return int(worker.removeprefix("gw")) if worker.startswith("gw") else None


def worker_redis_url(url: str, worker: str = WORKER) -> str:
    """``url`` on a Redis database number of ``worker``'s own: ``gwN`` uses ``N % 15 + 1``.

    Redis has 16 databases (0-15) by default: a serial run keeps the configured one, the
    workers take 1-15 (beyond 15 workers two share one; each test's keys still carry a
    prefix of their own, which also keeps pub/sub channels apart: they span databases).
    """
    index = _index(worker)
    if index is None:
        return url
    return urlunsplit(urlsplit(url)._replace(path=f"/{index % 15 + 1}"))


def port_range(worker: str = WORKER, count: int | None = None) -> range:
    """``worker``'s share of :data:`PORTS`, one of ``count`` equal slices (all of it for
    ``main``); ``count`` defaults to ``PYTEST_XDIST_WORKER_COUNT``."""
    index = _index(worker)
    if index is None:
        return PORTS
    if count is None:
        count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    count = max(1, count)
    size = len(PORTS) // count
    start = PORTS.start + index % count * size
    return range(start, start + size)
