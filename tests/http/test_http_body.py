"""One bounded body reader for the endpoints that read whole bodies (http/body.py)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from bastion.http.body import read_bounded


class TooLargeError(Exception):
    pass


def _request(chunks: list[bytes], content_length: str | None = None) -> Request:
    headers = [] if content_length is None else [(b"content-length", content_length.encode())]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


async def test_a_body_within_the_bound_is_read_whole() -> None:
    body = await read_bounded(_request([b"ab", b"cd"], "4"), 4, TooLargeError)
    assert body == b"abcd"


async def test_a_declared_length_beyond_the_bound_is_refused_before_reading() -> None:
    request = _request([b"x"], "5")
    with pytest.raises(TooLargeError):
        await read_bounded(request, 4, TooLargeError)
    # Nothing was received: the one message is still there.
    assert await request.receive() == {"type": "http.request", "body": b"x", "more_body": False}


@pytest.mark.parametrize("declared", [None, "3", "nonsense"])
async def test_a_streamed_body_past_the_bound_is_refused(declared: str | None) -> None:
    with pytest.raises(TooLargeError):
        await read_bounded(_request([b"abc", b"de"], declared), 4, TooLargeError)
