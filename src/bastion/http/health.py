"""Liveness and readiness probes.

``GET|HEAD /healthz`` — liveness: the process is up and its event loop answers.
It calls no dependency, so a database outage never gets a healthy process
restarted by an orchestrator.

``GET|HEAD /readyz`` — readiness: pings the database and the shared state
and checks that the change feed was read recently (``storage/feed.py``),
concurrently, within :data:`READINESS_TIMEOUT` seconds overall. 200 with every
check "ok", or 503 problem+json with reason ``not_ready`` and ``checks``
mapping each check to "ok" or a one-line reason (never a URL or password: the
storage errors' details are already redacted, other exceptions are reported
by class name only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.errors import BastionError
from bastion.http.errors import NotReadyError

__all__ = ["READINESS_TIMEOUT", "Probed", "health_routes", "run_checks"]

log = logging.getLogger("bastion.http")

READINESS_TIMEOUT = 2.0
"""Seconds /readyz waits for all checks together before reporting the slow ones as failed."""

_NO_STORE = {"cache-control": "no-store"}
_LIVE_BODY = orjson.dumps({"status": "ok"})
_REASON_MAX = 200


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "failed"
    return line[:_REASON_MAX]


async def _check(name: str, ping: Callable[[], Awaitable[None]]) -> str:
    try:
        await ping()
    except BastionError as error:
        return _one_line(error.detail)
    except Exception as exc:
        # Arbitrary exception text may carry a DSN or host details: report the type only.
        log.warning("readiness check %s failed with %s", name, type(exc).__name__, exc_info=exc)
        return f"unexpected {type(exc).__name__}"
    return "ok"


async def run_checks(
    checks: dict[str, Callable[[], Awaitable[None]]],
    timeout: float = READINESS_TIMEOUT,  # noqa: ASYNC109
) -> dict[str, str]:
    """Run every check concurrently; a check still running after ``timeout`` s is cancelled.

    Returns each check's name mapped to "ok" or a one-line reason. Never raises.
    """
    tasks = {name: asyncio.ensure_future(_check(name, ping)) for name, ping in checks.items()}
    if tasks:
        await asyncio.wait(tasks.values(), timeout=timeout)
    results: dict[str, str] = {}
    for name, task in tasks.items():
        if task.done():
            results[name] = task.result()
        else:
            task.cancel()
            results[name] = f"no answer within {timeout:g} s"
    return results


class _Pingable(Protocol):
    async def ping(self) -> None:
        """Return when reachable; raise a ``ServiceUnavailableError`` subclass when not."""


class _Checkable(Protocol):
    async def check(self) -> None: ...


class Probed(Protocol):
    """What readiness checks: the database, shared state and the change feed."""

    @property
    def db(self) -> _Pingable: ...
    @property
    def shared(self) -> _Pingable: ...
    @property
    def changes(self) -> _Checkable: ...


def health_routes(runtime: Probed, *, timeout: float = READINESS_TIMEOUT) -> list[Route]:
    """The ``/healthz`` and ``/readyz`` routes for ``runtime`` (``db``, ``shared``, ``changes``).

    ``/readyz`` raises :class:`~bastion.http.errors.NotReadyError` (rendered as
    503 problem+json by the error middleware) when a check fails.
    """

    async def healthz(request: Request) -> Response:
        return Response(_LIVE_BODY, media_type="application/json", headers=_NO_STORE)

    async def readyz(request: Request) -> Response:
        checks = await run_checks(
            {
                "database": runtime.db.ping,
                "shared_state": runtime.shared.ping,
                "change_feed": runtime.changes.check,
            },
            timeout,
        )
        failing = [name for name, result in checks.items() if result != "ok"]
        if failing:
            raise NotReadyError(f"not ready: {', '.join(failing)} failing", checks=checks)
        body = orjson.dumps({"status": "ready", "checks": checks})
        return Response(body, media_type="application/json", headers=_NO_STORE)

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"], name="healthz"),
        Route("/readyz", readyz, methods=["GET", "HEAD"], name="readyz"),
    ]
