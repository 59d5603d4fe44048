"""How the Python app reads a request-target, from its own code: ``BastionApp._dispatch``
(the control plane's paths, the app's 400 for a ``%`` path normalisation refuses), then
the gateway's ``match`` step (``normalize_path``). The specification the native
``RouteTable.target`` is held to.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

from bastion.gateway.errors import BadRequestPathError
from bastion.gateway.paths import normalize_path
from bastion.http.app import BastionApp


class _ToOwned(Exception):
    pass


class _ToGateway(Exception):
    pass


class _Probe(BastionApp):
    async def _owned(self, scope: Any, receive: Any, send: Any) -> None:
        raise _ToOwned

    async def _gateway(self, scope: Any, receive: Any, send: Any) -> None:
        raise _ToGateway


_APP = _Probe(
    SimpleNamespace(settings=SimpleNamespace(trusted_proxies=()), db=None, shared=None, node_id="t")
)


def app_dispatch(raw_path: bytes) -> str:
    """``"owned"`` (bastion's endpoints) or ``"gateway"``, as the app decides for a request
    whose raw path is ``raw_path`` (its ``path`` decoded as a server that hands over bytes
    outside ASCII decodes it: UTF-8); raises the app's ``BadRequestPathError``."""
    path = raw_path.decode("utf-8")
    if "%" in path:
        path = unquote(path)
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": raw_path, "headers": []}
    running = _APP._dispatch(scope, _never, _never)
    try:
        running.send(None)
    except _ToOwned:
        return "owned"
    except _ToGateway:
        return "gateway"
    finally:
        running.close()
    raise AssertionError("the app neither served nor handed over the request")


async def _never(*_: Any) -> Any:
    raise AssertionError("not reached")


def python_target(target: str) -> tuple[Any, ...]:
    """What Python does with an origin-form ``target`` (path and query):
    ``("gateway", normal path, query or None)``; ``("refused", detail, "app_invalid_path")``
    (the app's 400) or ``("refused", detail, "invalid_path")`` (the gateway's ``match``
    step's); ``("python", "reserved")`` (bastion's own endpoints). A path outside ASCII is
    read as its UTF-8 bytes (``normalize_path`` percent-encodes them)."""
    raw_path, _, query = target.partition("?")
    raw = raw_path.encode("utf-8")
    try:
        where = app_dispatch(raw)
    except BadRequestPathError as exc:
        return ("refused", exc.detail, "app_invalid_path")
    if where == "owned":
        return ("python", "reserved")
    try:
        path = normalize_path(raw)
    except BadRequestPathError as exc:
        return ("refused", exc.detail, "invalid_path")
    return ("gateway", path, query or None)
