"""Recorded answers: what Python's pipeline answered, kept as the native plane's specification.

Tests used to compare a native answer byte for byte with its Python twin (the same request
deferred with a method-override header). Python's request path is gone; what its twin
answered is recorded in ``tests/vectors/twins/<test module>.json``, one entry per case, in
the form :func:`answer` normalises a response to: the status, the head in order without the
request id and the date (``content-length`` as of the normalised body) and the body, the
request id stood for by ``RID`` in both (``X-Bastion-Request-Id``). :class:`Recorded` loads
a module's file; ``recorded.check(case, response)`` asserts a native answer equals the
case's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from _support.gateway_server import RawResponse, row_parts

__all__ = ["TWINS", "Recorded", "answer", "recorded_row"]

#: Where the recorded answers are, one JSON file per test module.
TWINS = Path(__file__).resolve().parent.parent / "vectors" / "twins"

_SKIPPED = ("x-request-id", "date")


def _masked(value: str, rid: str) -> str:
    return value.replace(rid, "RID") if rid else value


def answer(response: httpx.Response | RawResponse) -> dict[str, Any]:
    """``response`` as recorded: ``status``, ``headers`` (``[name, value]`` pairs, names
    lower-cased, in order) and ``body`` (text), the request id replaced by ``RID``."""
    if isinstance(response, RawResponse):
        rid, content = response.request_id, response.body
        head = list(response.headers)
    else:
        rid, content = response.headers.get("x-request-id", ""), response.content
        head = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in response.headers.raw]
    body = content.replace(rid.encode(), b"RID") if rid else content
    headers = [
        [name, str(len(body)) if name == "content-length" else _masked(value, rid)]
        for name, value in head
        if name not in _SKIPPED
    ]
    status = response.status if isinstance(response, RawResponse) else response.status_code
    return {"status": status, "headers": headers, "body": body.decode("utf-8")}


class Recorded:
    """The recorded answers of test module ``module`` (its ``__name__`` or file stem)."""

    def __init__(self, module: str) -> None:
        self.path = TWINS / f"{module.rsplit('.', 1)[-1]}.json"
        self.answers: dict[str, dict[str, Any]] = orjson.loads(self.path.read_bytes())

    def __getitem__(self, case: str) -> dict[str, Any]:
        return self.answers[case]

    def check(self, case: str, response: httpx.Response | RawResponse) -> None:
        """``response`` is, normalised, exactly what Python answered to ``case``."""
        assert answer(response) == self.answers[case], case


def recorded_row(row: Any) -> Any:
    """An audit row's :func:`~_support.gateway_server.row_parts` as recorded (JSON: tuples
    read back as lists)."""
    return orjson.loads(orjson.dumps(row_parts(row), default=str))
