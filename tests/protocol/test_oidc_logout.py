"""RP-Initiated Logout 1.0 (``protocol/oidc/logout.py``) and the Back-Channel Logout token
(``protocol/oidc/backchannel.py``): parameters, the hint's client, exact URI matching, state."""

from __future__ import annotations

import pytest

from bastion.protocol.oidc.backchannel import (
    BACKCHANNEL_LOGOUT_EVENT,
    DISCOVERY_MEMBERS,
    logout_token_claims,
)
from bastion.protocol.oidc.logout import (
    InvalidLogoutRequestError,
    LogoutRequest,
    check_post_logout_redirect_uri,
    hint_client,
    parse_logout_request,
    post_logout_redirect,
)

REGISTERED = ("https://rp.example.com/bye", "https://rp.example.com/out?from=op")


def test_parameters_read_and_ignored() -> None:
    request = parse_logout_request(
        {
            "id_token_hint": ["h"],
            "client_id": ["c"],
            "post_logout_redirect_uri": [REGISTERED[0]],
            "state": ["s"],
            "ui_locales": ["fr"],
            "logout_hint": ["alice"],
            "other": ["x", "y"],
        }
    )
    assert request == LogoutRequest("h", "c", REGISTERED[0], "s")
    assert parse_logout_request({"state": [""]}) == LogoutRequest()


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"client_id": ["a", "b"]}, "repeated_parameter"),
        ({"state": ["s", "s"]}, "repeated_parameter"),
        ({"id_token_hint": ["x" * 8193]}, "parameter_too_long"),
    ],
)
def test_repeated_or_oversized_parameters_are_refused(
    params: dict[str, list[str]], reason: str
) -> None:
    with pytest.raises(InvalidLogoutRequestError) as refused:
        parse_logout_request(params)
    assert (refused.value.error, refused.value.reason) == ("invalid_request", reason)


@pytest.mark.parametrize(
    ("claims", "client"),
    [
        ({"aud": "spa"}, "spa"),
        ({"aud": ["spa"]}, "spa"),
        ({"aud": ["spa", "api"], "azp": "spa"}, "spa"),
    ],
)
def test_the_hint_names_its_client(claims: dict[str, object], client: str) -> None:
    assert hint_client(claims) == client


@pytest.mark.parametrize(
    "claims", [{}, {"aud": ""}, {"aud": ["a", "b"]}, {"aud": ["a", "b"], "azp": "c"}, {"aud": 1}]
)
def test_a_hint_without_one_client_is_refused(claims: dict[str, object]) -> None:
    with pytest.raises(InvalidLogoutRequestError) as refused:
        hint_client(claims)
    assert refused.value.reason == "id_token_hint_audience"


@pytest.mark.parametrize(
    "uri",
    [
        "https://rp.example.com/bye/",
        "https://RP.example.com/bye",
        "https://rp.example.com/Bye",
        "https://rp.example.com/bye?x=1",
        "https://rp.example.com/out",
        "http://rp.example.com/bye",
        "https://rp.example.com:443/bye",
    ],
)
def test_only_an_exact_registered_uri_passes(uri: str) -> None:
    for registered in REGISTERED:
        check_post_logout_redirect_uri(registered, "spa", REGISTERED)
    with pytest.raises(InvalidLogoutRequestError) as refused:
        check_post_logout_redirect_uri(uri, "spa", REGISTERED)
    assert refused.value.reason == "post_logout_redirect_uri_mismatch"


def test_a_uri_without_a_client_is_refused() -> None:
    with pytest.raises(InvalidLogoutRequestError) as refused:
        check_post_logout_redirect_uri(REGISTERED[0], None, REGISTERED)
    assert refused.value.reason == "client_unidentified"


def test_state_is_appended_keeping_the_registered_query() -> None:
    assert post_logout_redirect(REGISTERED[0], None) == REGISTERED[0]
    assert post_logout_redirect(REGISTERED[0], "a b&c") == REGISTERED[0] + "?state=a+b%26c"
    assert post_logout_redirect(REGISTERED[1], "s") == REGISTERED[1] + "&state=s"


def test_logout_token_claims() -> None:
    claims = logout_token_claims(
        issuer="https://op.example",
        client_id="spa",
        subject="u1",
        session_id="s1",
        now=1000,
        jti="j",
    )
    assert claims == {
        "iss": "https://op.example",
        "aud": "spa",
        "iat": 1000,
        "exp": 1120,
        "jti": "j",
        "sub": "u1",
        "sid": "s1",
        "events": {BACKCHANNEL_LOGOUT_EVENT: {}},
    }
    assert "nonce" not in claims
    assert DISCOVERY_MEMBERS == {
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }
