"""RFC 6749 §5.2 error classes: codes, statuses, bodies and headers."""

from __future__ import annotations

import orjson
import pytest

from bastion.errors import BastionError
from bastion.protocol.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    OAuthError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    safe_description,
)

NO_STORE = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


@pytest.mark.parametrize(
    ("cls", "error", "status"),
    [
        (InvalidRequestError, "invalid_request", 400),
        (InvalidClientError, "invalid_client", 401),
        (InvalidGrantError, "invalid_grant", 400),
        (UnauthorizedClientError, "unauthorized_client", 400),
        (UnsupportedGrantTypeError, "unsupported_grant_type", 400),
        (InvalidScopeError, "invalid_scope", 400),
        (InvalidTargetError, "invalid_target", 400),
    ],
)
def test_every_error_renders_its_code_and_status(
    cls: type[OAuthError], error: str, status: int
) -> None:
    exc = cls("something is wrong")
    assert isinstance(exc, BastionError)
    assert exc.code == exc.error == error
    assert exc.status == status
    assert exc.reason == error
    got_status, headers, body = exc.to_token_response()
    assert got_status == status
    assert headers == NO_STORE
    assert orjson.loads(body) == {"error": error, "error_description": "something is wrong"}


def test_error_without_description_sends_only_the_code() -> None:
    status, _, body = InvalidGrantError().to_token_response()
    assert status == 400
    assert orjson.loads(body) == {"error": "invalid_grant"}


def test_invalid_client_collapses_the_description_and_keeps_the_reason() -> None:
    exc = InvalidClientError(reason="bad_secret")
    assert exc.error_description == "client authentication failed"
    assert exc.reason == "bad_secret"
    status, headers, body = exc.to_token_response()
    assert status == 401
    assert "WWW-Authenticate" not in headers
    assert orjson.loads(body) == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }


def test_invalid_client_after_basic_sends_the_basic_challenge() -> None:
    exc = InvalidClientError(reason="unknown_client", basic=True)
    _, headers, _ = exc.to_token_response()
    assert headers["WWW-Authenticate"] == 'Basic realm="bastion"'
    again = InvalidClientError(reason="bad_secret").with_basic_challenge()
    assert again.reason == "bad_secret"
    assert again.headers()["WWW-Authenticate"] == 'Basic realm="bastion"'


def test_descriptions_are_limited_to_rfc6749_characters() -> None:
    assert safe_description('a"b\\c\né') == "a?b?c??"
    long = safe_description("x" * 1000)
    assert len(long) == 300
    assert long.endswith("...")
    exc = InvalidRequestError("parameter 'sc\"ope' repeated")
    assert exc.error_description == "parameter 'sc?ope' repeated"
