"""RFC 6749 §3.1 form parsing: media type, size, UTF-8, repetition, empty values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.protocol.rfc6749.errors import InvalidRequestError, OAuthError
from bastion.protocol.rfc6749.requests import MAX_FORM_BYTES, OAuthRequest, parse_form

FORM = "application/x-www-form-urlencoded"


def _error(body: bytes, content_type: str | None = FORM) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_form(body, content_type)
    return caught.value


def test_parses_a_token_request() -> None:
    body = b"grant_type=client_credentials&scope=a+b%20c&resource=https%3A%2F%2Fapi"
    assert parse_form(body, FORM) == {
        "grant_type": "client_credentials",
        "scope": "a b c",
        "resource": "https://api",
    }


@pytest.mark.parametrize(
    "content_type",
    [
        FORM,
        "Application/X-WWW-Form-Urlencoded",
        f"{FORM}; charset=UTF-8",
        f'{FORM};charset="utf-8"',
    ],
)
def test_accepts_the_form_media_type(content_type: str) -> None:
    assert parse_form(b"a=1", content_type) == {"a": "1"}


@pytest.mark.parametrize(
    "content_type", [None, "", "application/json", "multipart/form-data; boundary=x", "text/plain"]
)
def test_refuses_other_media_types(content_type: str | None) -> None:
    exc = _error(b"a=1", content_type)
    assert exc.error_description == "the request body must be application/x-www-form-urlencoded"


def test_refuses_another_charset() -> None:
    exc = _error(b"a=1", f"{FORM}; charset=iso-8859-1")
    assert exc.error_description == "the request body must be encoded as UTF-8"


def test_size_cap() -> None:
    ok = b"a=" + b"x" * (MAX_FORM_BYTES - 2)
    assert parse_form(ok, FORM)["a"] == "x" * (MAX_FORM_BYTES - 2)
    exc = _error(ok + b"x")
    assert exc.error_description == "the request body exceeds 65536 bytes"


def test_too_many_parameters() -> None:
    body = "&".join(f"p{i}=1" for i in range(65)).encode()
    assert _error(body).error_description == "the request body has more than 64 parameters"


@pytest.mark.parametrize("body", [b"a=%ff", b"a=\xff", b"a=%c3"])
def test_refuses_non_utf8(body: bytes) -> None:
    assert _error(body).error_description == "the request body is not valid UTF-8"


def test_repeated_parameter_is_invalid_request() -> None:
    exc = _error(b"scope=a&grant_type=x&scope=b")
    assert exc.code == "invalid_request"
    assert exc.status == 400
    assert exc.error_description == "parameter 'scope' repeated"


def test_parse_form_refuses_even_repeated_resource() -> None:
    assert _error(b"resource=a&resource=b").error_description == "parameter 'resource' repeated"


def test_empty_values_count_as_absent() -> None:
    assert parse_form(b"scope=&grant_type=x&client_secret", FORM) == {"grant_type": "x"}
    # An empty occurrence is omitted, so the parameter is not repeated.
    assert parse_form(b"scope=&scope=a", FORM) == {"scope": "a"}


def test_request_keeps_every_resource() -> None:
    request = OAuthRequest.from_http(
        "POST",
        [(b"content-type", FORM.encode()), (b"X-Thing", b"1"), (b"x-thing", b"2")],
        b"resource=a&resource=b&scope=s",
    )
    assert request.form == {"resource": "a", "scope": "s"}
    assert request.values("resource") == ("a", "b")
    assert request.values("scope") == ("s",)
    assert request.values("nothing") == ()
    assert request.headers["x-thing"] == ("1", "2")
    with pytest.raises(InvalidRequestError) as caught:
        request.header("X-Thing")
    assert caught.value.error_description == "header 'X-Thing' repeated"


def test_request_other_repetitions_still_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        OAuthRequest.from_http("POST", [("content-type", FORM)], b"scope=a&scope=b")
    assert caught.value.error_description == "parameter 'scope' repeated"


def test_get_request_has_no_form() -> None:
    request = OAuthRequest.from_http("get", [("Content-Type", "text/plain")], b"a=1", b"x=1")
    assert request.method == "GET"
    assert request.form == {}
    assert request.query == "x=1"


def test_post_without_content_type() -> None:
    with pytest.raises(InvalidRequestError):
        OAuthRequest.from_http("POST", [], b"a=1")


@given(st.binary(max_size=300))
def test_arbitrary_bodies_never_raise_anything_but_oauth_errors(body: bytes) -> None:
    try:
        form = parse_form(body, FORM)
    except OAuthError as exc:
        assert exc.code == "invalid_request"
    else:
        assert all(isinstance(k, str) and v for k, v in form.items())
