"""RFC 8693's own rules (``bastion.protocol.rfc8693``), whatever the subject token.

bastion's one grant over them, API keys exchanged for access tokens, is tested in
``tests/apikeys/test_token_exchange.py``; this file pins the protocol layer's part and that
it imports nothing of the features above it.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from bastion.protocol import rfc8693
from bastion.protocol.rfc6749.errors import InvalidRequestError, InvalidTargetError
from bastion.protocol.rfc6749.requests import OAuthRequest

TYPE = "urn:example:token-type:thing"


def _request(pairs: list[tuple[str, str]]) -> OAuthRequest:
    body = "&".join(f"{k}={v}" for k, v in pairs).encode()
    headers = [(b"content-type", b"application/x-www-form-urlencoded")]
    return OAuthRequest.from_http("POST", headers, body, b"")


def test_the_module_exports_the_protocol_only() -> None:
    assert sorted(rfc8693.__all__) == sorted(
        [
            "ACCESS_TOKEN_TYPE",
            "GRANT_TYPE",
            "MAX_TARGETS",
            "ExchangeRateLimitedError",
            "echo",
            "requested_targets",
            "sends_client_credentials",
            "subject_token",
            "token_response",
        ]
    )
    assert rfc8693.GRANT_TYPE == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert rfc8693.ACCESS_TOKEN_TYPE == "urn:ietf:params:oauth:token-type:access_token"


def test_the_protocol_layer_imports_no_feature() -> None:
    tree = ast.parse(Path(rfc8693.__file__).read_text(encoding="utf-8"))
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
    }
    above = {
        m
        for m in imported
        if m.startswith("bastion.")
        and not m.startswith(
            ("bastion.protocol.", "bastion.errors", "bastion.crypto", "bastion.storage")
        )
    }
    assert above == set()


def test_the_subject_token_of_a_well_formed_request() -> None:
    request = _request([("subject_token", "t"), ("subject_token_type", TYPE)])
    assert rfc8693.subject_token(request, TYPE) == "t"
    with_type = _request(
        [
            ("subject_token", "t"),
            ("subject_token_type", TYPE),
            ("requested_token_type", rfc8693.ACCESS_TOKEN_TYPE),
        ]
    )
    assert rfc8693.subject_token(with_type, TYPE) == "t"


@pytest.mark.parametrize(
    ("pairs", "description"),
    [
        ([("subject_token", "t")], "missing parameter 'subject_token_type'"),
        ([("subject_token_type", TYPE)], "missing parameter 'subject_token'"),
        (
            [("subject_token", "t"), ("subject_token_type", "urn:other")],
            f"subject_token_type 'urn:other' is not supported; use {TYPE}",
        ),
        (
            [("subject_token", "t"), ("subject_token_type", TYPE), ("actor_token", "a")],
            "delegation (actor_token) is not supported",
        ),
        (
            [("subject_token", "t"), ("subject_token_type", TYPE), ("requested_token_type", "x")],
            "requested_token_type 'x' is not supported; bastion issues "
            "urn:ietf:params:oauth:token-type:access_token",
        ),
    ],
)
def test_the_parameters_of_section_2_1(pairs: list[tuple[str, str]], description: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        rfc8693.subject_token(_request(pairs), TYPE)
    assert caught.value.error_description == description


def test_targets_are_distinct_in_order_and_bounded() -> None:
    request = _request(
        [
            ("resource", "https%3A%2F%2Fapi.example%2F"),
            ("audience", "orders"),
            ("audience", "orders"),
        ]
    )
    assert rfc8693.requested_targets(request) == ("https://api.example/", "orders")
    many = _request([("audience", f"a{n}") for n in range(rfc8693.MAX_TARGETS + 1)])
    with pytest.raises(InvalidTargetError):
        rfc8693.requested_targets(many)
    with pytest.raises(InvalidTargetError):
        rfc8693.requested_targets(_request([("audience", "x" * 2049)]))


def test_the_token_response_of_section_2_2_1() -> None:
    response: dict[str, Any] = rfc8693.token_response("at", 300, "a b")
    assert response == {
        "access_token": "at",
        "issued_token_type": rfc8693.ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "a b",
    }
    assert "scope" not in rfc8693.token_response("at", 300, "")


def test_echo_bounds_what_an_error_repeats() -> None:
    assert rfc8693.echo("x" * 500) == "x" * 100
