"""One bounded body reader for the endpoints that read whole bodies (http/body.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request

from bastion.http.body import read_bounded, validation_problems


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


class BadLengthError(Exception):
    pass


async def test_a_length_that_is_no_number_is_refused_when_the_caller_asks() -> None:
    request = _request([b"x"], "nonsense")
    with pytest.raises(BadLengthError, match=r"^Content-Length must be a number of bytes$"):
        await read_bounded(request, 4, TooLargeError, invalid=BadLengthError)
    # Refused before reading, like a declared length beyond the bound.
    assert await request.receive() == {"type": "http.request", "body": b"x", "more_body": False}
    # Without ``invalid`` it is left to the server: the body is read.
    assert await read_bounded(_request([b"x"], "nonsense"), 4, TooLargeError) == b"x"


def test_validation_problems_name_each_field_and_never_the_input() -> None:
    class Item(BaseModel):
        token: str

    secret = "bst_" + "s" * 40
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(list[Item]).validate_python([{"token": secret}, {"token": 7}, {}])
    detail, problems = validation_problems(caught.value)
    assert detail == "[1].token: Input should be a valid string"
    assert problems == [
        {"field": "[1].token", "message": "Input should be a valid string"},
        {"field": "[2].token", "message": "Field required"},
    ]
    with pytest.raises(ValidationError) as caught:
        Item.model_validate({"token": ["x", secret]})
    detail, problems = validation_problems(caught.value)
    assert detail == "token: Input should be a valid string"
    assert secret not in repr(problems)
