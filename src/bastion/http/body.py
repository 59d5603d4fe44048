"""Reading a request body with a bound: the endpoints that read whole bodies use this one loop.

A declared ``Content-Length`` above the bound is refused before anything is
read; a body that streams past the bound (no or a lying ``Content-Length``) is
refused as soon as it does, so no endpoint ever holds more than the bound.
:func:`validation_problems` words what a JSON body's validation found, the same
for every endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

__all__ = ["read_bounded", "validation_problems"]


async def read_bounded(
    request: Request,
    limit: int,
    too_large: Callable[[], Exception],
    *,
    invalid: Callable[[str], Exception] | None = None,
) -> bytes:
    """The body of ``request``, at most ``limit`` bytes; raises ``too_large()`` beyond.

    A ``Content-Length`` that is not a number raises ``invalid(detail)`` when given;
    otherwise it is left to the server, which frames the body.
    """
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit() and invalid is not None:
        raise invalid("Content-Length must be a number of bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_problems(error: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    """The detail of a 400 for ``error`` (its first problem) and every problem as
    ``{"field": "items[0].name", "message": ...}``.

    Never the input: a bad member could be (part of) a secret.
    """
    problems = [
        {"field": _field_path(item["loc"]), "message": item["msg"]}
        for item in error.errors(include_url=False, include_input=False, include_context=False)
    ]
    first = problems[0] if problems else {"field": "body", "message": "invalid"}
    return f"{first['field']}: {first['message']}", problems
