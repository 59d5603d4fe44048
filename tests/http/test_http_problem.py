"""RFC 9457 rendering of bastion errors."""

from __future__ import annotations

from typing import Any

import orjson

from bastion.errors import BastionError, ServiceUnavailableError
from bastion.http.problem import problem_response, send_problem
from bastion.storage.errors import DatabaseUnavailableError


class InvalidTokenError(BastionError):
    code = "invalid_token"
    status = 401
    title = "Invalid token"
    www_authenticate = 'Bearer error="invalid_token"'


class RateLimitedError(BastionError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"

    def __init__(self, retry_after: float) -> None:
        super().__init__("slow down")
        self.retry_after = retry_after


def test_problem_members_headers_and_extra() -> None:
    status, headers, body = problem_response(
        BastionError("something broke", route="orders"), "rid-1"
    )
    assert status == 500
    assert orjson.loads(body) == {
        "type": "urn:bastion:problem:internal_error",
        "title": "Internal error",
        "status": 500,
        "detail": "something broke",
        "reason": "internal_error",
        "route": "orders",
        "request_id": "rid-1",
    }
    assert headers == [
        (b"content-type", b"application/problem+json"),
        (b"cache-control", b"no-store"),
        (b"content-length", str(len(body)).encode()),
    ]


def test_www_authenticate_from_the_error_class() -> None:
    status, headers, body = problem_response(InvalidTokenError("token expired"), "r")
    assert status == 401
    assert (b"www-authenticate", b'Bearer error="invalid_token"') in headers
    assert orjson.loads(body)["reason"] == "invalid_token"


def test_www_authenticate_cannot_split_the_response() -> None:
    error = InvalidTokenError()
    error.www_authenticate = 'Bearer error="x"\r\nSet-Cookie: a=b'
    _, headers, _ = problem_response(error, "r")
    assert (b"www-authenticate", b'Bearer error="x"  Set-Cookie: a=b') in headers


def test_service_unavailable_gets_retry_after_1() -> None:
    status, headers, body = problem_response(DatabaseUnavailableError("db down"), "r")
    assert status == 503
    assert (b"retry-after", b"1") in headers
    assert orjson.loads(body)["reason"] == "database_unavailable"
    _, headers, _ = problem_response(ServiceUnavailableError(), "r")
    assert (b"retry-after", b"1") in headers


def test_retry_after_attribute_rounds_up() -> None:
    status, headers, _ = problem_response(RateLimitedError(2.2), "r")
    assert status == 429
    assert (b"retry-after", b"3") in headers


def test_no_retry_after_for_ordinary_errors() -> None:
    _, headers, _ = problem_response(InvalidTokenError(), "r")
    assert not [h for h in headers if h[0] == b"retry-after"]


def test_unserialisable_extra_is_stringified() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    _, _, body = problem_response(BastionError("x", thing=Opaque()), "r")
    assert orjson.loads(body)["thing"] == "opaque"


async def test_send_problem_sends_start_and_body() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await send_problem(send, InvalidTokenError(), "abc", extra_headers=[(b"x-extra", b"1")])
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 401
    assert (b"x-extra", b"1") in sent[0]["headers"]
    assert orjson.loads(sent[1]["body"])["request_id"] == "abc"


def test_extra_header_pairs_are_rendered_and_methods_ignored() -> None:
    from bastion.errors import BastionError
    from bastion.http.problem import problem_response
    from bastion.protocol.rfc6749.errors import InvalidRequestError

    class Limited(BastionError):
        code = "rate_limited"
        status = 429
        title = "Too many requests"
        retry_after = 3
        headers = [("RateLimit-Policy", '"ip";q=10;w=60'), ("RateLimit", '"ip";r=0;t=3')]

    status, headers, _ = problem_response(Limited(), "rid")
    assert status == 429
    assert (b"ratelimit-policy", b'"ip";q=10;w=60') in headers
    assert (b"ratelimit", b'"ip";r=0;t=3') in headers
    assert (b"retry-after", b"3") in headers
    # An OAuth error's headers() method is not a header list: rendering must not break.
    status, _, _ = problem_response(InvalidRequestError("bad"), "rid")
    assert status == 400
