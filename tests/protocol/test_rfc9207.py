"""The authorization response (RFC 6749 §4.1.2) with ``iss`` (RFC 9207)."""

from __future__ import annotations

import pytest

from bastion.protocol.rfc6749.errors import InvalidRequestError
from bastion.protocol.rfc9207 import (
    ISS_PARAMETER_SUPPORTED,
    IssuerMismatchError,
    check_issuer,
    error_redirect,
    response_parameters,
    success_redirect,
)

ISSUER = "https://auth.example.com"


def test_success_redirect() -> None:
    location = success_redirect("https://app.example/cb", code="c1", state="s 1", issuer=ISSUER)
    assert location == "https://app.example/cb?code=c1&state=s+1&iss=https%3A%2F%2Fauth.example.com"
    assert response_parameters(location) == {"code": "c1", "state": "s 1", "iss": ISSUER}
    check_issuer(response_parameters(location), ISSUER)
    assert ISS_PARAMETER_SUPPORTED is True


def test_success_without_state_omits_it() -> None:
    location = success_redirect("https://app.example/cb", code="c1", state=None, issuer=ISSUER)
    assert response_parameters(location) == {"code": "c1", "iss": ISSUER}


def test_existing_query_is_kept() -> None:
    location = success_redirect(
        "https://app.example/cb?tenant=a&x=%2F", code="c", state="s", issuer=ISSUER
    )
    assert location.startswith("https://app.example/cb?tenant=a&x=%2F&code=c&state=s&iss=")


def test_error_redirect() -> None:
    error = InvalidRequestError('bad "value"\n')
    location = error_redirect("https://app.example/cb?a=1", error, state="xyz", issuer=ISSUER)
    assert response_parameters(location) == {
        "error": "invalid_request",
        "error_description": "bad ?value??",
        "state": "xyz",
        "iss": ISSUER,
    }
    assert location.startswith("https://app.example/cb?a=1&error=invalid_request&")


def test_error_without_description_or_state() -> None:
    location = error_redirect(
        "https://app.example/cb", InvalidRequestError(), state=None, issuer=ISSUER
    )
    assert response_parameters(location) == {"error": "invalid_request", "iss": ISSUER}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://app.example/cb#frag", "must not have a fragment"),
        ("https://app.example/cb#", "must not have a fragment"),
        ("https://app.example/cb?state=1", "already has response parameters \\['state'\\]"),
        ("https://app.example/cb?iss=x&code=y", "\\['code', 'iss'\\]"),
    ],
)
def test_redirect_uri_mistakes_refused(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        success_redirect(uri, code="c", state=None, issuer=ISSUER)


def test_check_issuer_refuses_missing_and_other() -> None:
    with pytest.raises(IssuerMismatchError, match="no iss parameter") as caught:
        check_issuer({"code": "c"}, ISSUER)
    assert caught.value.code == "issuer_mismatch"
    for other in (ISSUER + "/", "https://AUTH.example.com", "https://evil.example"):
        with pytest.raises(IssuerMismatchError, match="another issuer"):
            check_issuer({"iss": other}, ISSUER)


def test_response_parameters_refuses_repeats_and_ignores_others() -> None:
    assert response_parameters("https://a/cb?tenant=1&code=c") == {"code": "c"}
    with pytest.raises(ValueError, match="'iss' repeated"):
        response_parameters("https://a/cb?iss=a&iss=b")
