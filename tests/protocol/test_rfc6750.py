"""RFC 6750 Bearer token usage at bastion's own resources: the header only, exact challenges."""

from __future__ import annotations

import pytest

from bastion.protocol.rfc6750 import (
    BearerInsufficientScopeError,
    BearerInvalidRequestError,
    BearerInvalidTokenError,
    BearerMissingError,
    bearer_token,
)


def test_the_header_gives_the_token() -> None:
    assert bearer_token("Bearer abc.def-ghi_jkl~/+==") == "abc.def-ghi_jkl~/+=="
    assert bearer_token("bearer  abc ") == "abc"


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Token abc", ""])
def test_no_bearer_credentials_is_a_bare_challenge(header: str | None) -> None:
    with pytest.raises(BearerMissingError) as info:
        bearer_token(header)
    assert (info.value.status, info.value.www_authenticate) == (401, 'Bearer realm="bastion"')


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", 'Bearer a"b', "Bearer " + "a" * 20000])
def test_malformed_credentials_are_invalid_request(header: str) -> None:
    with pytest.raises(BearerInvalidRequestError) as info:
        bearer_token(header)
    assert (info.value.status, info.value.error, info.value.reason) == (
        400,
        "invalid_request",
        "malformed_header",
    )


@pytest.mark.parametrize(
    ("query", "body", "reason"), [(True, False, "token_in_query"), (False, True, "token_in_body")]
)
def test_a_token_outside_the_header_is_refused_even_beside_one(
    query: bool, body: bool, reason: str
) -> None:
    with pytest.raises(BearerInvalidRequestError) as info:
        bearer_token("Bearer abc", in_query=query, in_body=body)
    assert info.value.reason == reason
    assert info.value.www_authenticate is not None
    assert info.value.www_authenticate.startswith('Bearer realm="bastion", error="invalid_request"')


def test_the_error_challenges() -> None:
    invalid = BearerInvalidTokenError(reason="revoked")
    assert (invalid.status, invalid.www_authenticate) == (
        401,
        'Bearer realm="bastion", error="invalid_token", '
        'error_description="the access token is invalid"',
    )
    scope = BearerInsufficientScopeError(("openid",))
    assert (scope.status, scope.error, scope.www_authenticate) == (
        403,
        "insufficient_scope",
        'Bearer realm="bastion", error="insufficient_scope", '
        'error_description="the access token needs the scope openid", scope="openid"',
    )
