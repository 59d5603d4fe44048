"""Recorded answers of Python's request pipeline: the specification the native core answers by.

Each native answer used to be compared with its Python twin (the same request forced to
Python's pipeline). Python's answers were recorded once, before that pipeline was removed, into
``tests/vectors/twins/<test module>.json`` (an object: case -> recorded answer); a test now
compares the native answer with the record. Changing a record changes the specification: do
it on purpose, by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from _support.gateway_server import RawResponse

__all__ = ["answer", "audit_fields", "recorded"]

_TWINS = Path(__file__).parents[1] / "vectors" / "twins"


def recorded(test_file: str) -> dict[str, Any]:
    """The recorded answers of the test module at ``test_file`` (its ``__file__``)."""
    loaded: dict[str, Any] = json.loads((_TWINS / f"{Path(test_file).stem}.json").read_text())
    return loaded


def answer(response: httpx.Response | RawResponse) -> dict[str, Any]:
    """A response as recorded: its status, its header fields in order (names lower-cased,
    without ``x-request-id`` and ``date``) and its body, the request id in both masked as
    ``RID`` (so ``content-length`` is the masked body's: the planes' ids differ in length)."""
    if isinstance(response, RawResponse):
        rid = response.request_id.encode()
        status, body = response.status, response.body
        raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.headers]
    else:
        rid = response.headers["x-request-id"].encode()
        status, body = response.status_code, response.content
        raw = [(n.lower(), v) for n, v in response.headers.raw]
    body = body.replace(rid, b"RID") if rid else body
    head = [
        [name.decode("latin-1"), (value.replace(rid, b"RID") if rid else value).decode("latin-1")]
        for name, value in raw
        if name not in (b"x-request-id", b"date")
    ]
    for field in head:
        if field[0] == "content-length":
            field[1] = str(len(body))
    return {"status": status, "headers": head, "body": body.decode("utf-8", "backslashreplace")}


def audit_fields(row: Any) -> dict[str, Any]:
    """An audit row as recorded: what a native row shares with Python's for the same request
    (:func:`_support.gateway_server.row_parts`: all but ids and times), by name."""
    names = ("outcome", "reason", "route", "ip", "subject", "key_id", "client_id", "user_agent")
    return {**{name: getattr(row, name) for name in names}, "data": row.data}
