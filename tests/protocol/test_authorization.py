"""The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1): page vs redirect errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from bastion.protocol.rfc6749.authorization import (
    AccessDeniedError,
    AuthorizationPageError,
    AuthorizationParameters,
    AuthorizationRedirectError,
    AuthorizationRequest,
    authorization_request,
    match_redirect_uri,
    validate_authorization_request,
)
from bastion.protocol.rfc9207 import response_parameters
from bastion.storage.models import Client

from .protocol_support import ISSUER, confidential

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
REDIRECT = "https://app.example.com/callback"
LOOPBACK = "http://127.0.0.1:8080/cb"


def web_client(**changes: Any) -> Client:
    values: dict[str, Any] = {
        "grant_types": ("authorization_code", "refresh_token"),
        "redirect_uris": (REDIRECT, "https://app.example.com/other"),
        "scopes": ("openid", "profile", "email", "orders:read"),
    }
    values.update(changes)
    return confidential(values.pop("client_id", "web"), **values)


def query(**overrides: str | list[str] | None) -> str:
    params: dict[str, str | list[str] | None] = {
        "response_type": "code",
        "client_id": "web",
        "redirect_uri": REDIRECT,
        "scope": "openid profile",
        "state": "af0ifjsldkj",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        pairs.extend((name, item) for item in ([value] if isinstance(value, str) else value))
    return urlencode(pairs)


def validate(
    client: Client | None = None, raw_query: str | None = None, **overrides: str | list[str] | None
) -> AuthorizationRequest:
    parameters = AuthorizationParameters.from_http(
        "GET", raw_query if raw_query is not None else query(**overrides)
    )
    return validate_authorization_request(
        parameters, client if client is not None else web_client(), issuer=ISSUER
    )


def page_error(
    client: Client | None = None, **overrides: str | list[str] | None
) -> AuthorizationPageError:
    with pytest.raises(AuthorizationPageError) as caught:
        validate(client, **overrides)
    assert not isinstance(caught.value, AuthorizationRedirectError)
    return caught.value


def redirect_error(**overrides: str | list[str] | None) -> dict[str, str]:
    with pytest.raises(AuthorizationRedirectError) as caught:
        validate(**overrides)
    location = caught.value.location
    assert location.startswith(REDIRECT + "?")
    parameters = response_parameters(location)
    assert parameters["iss"] == ISSUER
    assert parameters["error"] == caught.value.code
    return parameters


def test_valid_request() -> None:
    request = validate(
        nonce="n-0S6",
        prompt="login consent",
        max_age="3600",
        login_hint="ann",
        acr_values="urn:a urn:b",
    )
    assert request == AuthorizationRequest(
        client_id="web",
        redirect_uri=REDIRECT,
        redirect_uri_sent=True,
        issuer=ISSUER,
        code_challenge=CHALLENGE,
        scope=("openid", "profile"),
        state="af0ifjsldkj",
        nonce="n-0S6",
        prompt=frozenset({"login", "consent"}),
        max_age=3600,
        login_hint="ann",
        acr_values=("urn:a", "urn:b"),
    )
    assert request.is_openid
    location = request.success_location("code-1")
    assert response_parameters(location) == {
        "code": "code-1",
        "state": "af0ifjsldkj",
        "iss": ISSUER,
    }


def test_post_form_is_read() -> None:
    parameters = AuthorizationParameters.from_http(
        "POST", "client_id=ignored", query().encode(), "application/x-www-form-urlencoded"
    )
    request = validate_authorization_request(parameters, web_client(), issuer=ISSUER)
    assert request.client_id == "web"


@pytest.mark.parametrize(
    ("method", "body", "content_type", "words"),
    [
        ("PUT", b"", None, "GET and POST only"),
        ("POST", b"client_id=web", "application/json", "must be application/x-www-form-urlencoded"),
        ("POST", b"client_id=\xff", "application/x-www-form-urlencoded", "not valid UTF-8"),
        (
            "POST",
            b"&".join(b"p%d=1" % i for i in range(65)),
            "application/x-www-form-urlencoded",
            "more than 64 parameters",
        ),
    ],
)
def test_unreadable_parameters_are_page_errors(
    method: str, body: bytes, content_type: str | None, words: str
) -> None:
    with pytest.raises(AuthorizationPageError) as caught:
        AuthorizationParameters.from_http(method, "", body, content_type)
    assert caught.value.reason == "malformed_request"
    assert words in (caught.value.error_description or "")


def test_query_text_and_bytes_read_alike() -> None:
    expected = {"nonce": ("\u20ac",), "state": ("a b",)}
    assert AuthorizationParameters.from_http("GET", "nonce=\u20ac&state=a+b").values == expected
    assert (
        AuthorizationParameters.from_http("GET", b"nonce=%E2%82%AC&state=a%20b").values == expected
    )


def test_query_over_64_kib_is_a_page_error() -> None:
    with pytest.raises(AuthorizationPageError, match="the query exceeds 65536 bytes"):
        AuthorizationParameters.from_http("GET", "a=" + "b" * 65536)


@pytest.mark.parametrize(
    ("client", "overrides", "reason", "words"),
    [
        (None, {"client_id": None}, "client_id_missing", "missing parameter 'client_id'"),
        (
            None,
            {"client_id": ["web", "web"]},
            "client_id_repeated",
            "parameter 'client_id' repeated",
        ),
        (None, {"client_id": "other"}, "unknown_client", "unknown client"),
        (
            None,
            {"redirect_uri": ["https://app.example.com/callback"] * 2},
            "redirect_uri_repeated",
            "repeated",
        ),
        (None, {"redirect_uri": None}, "redirect_uri_missing", "missing parameter 'redirect_uri'"),
        ("none", {}, "no_redirect_uri_registered", "no redirect URI registered"),
    ],
)
def test_client_and_redirect_problems_are_page_errors(
    client: str | None, overrides: dict[str, Any], reason: str, words: str
) -> None:
    chosen = web_client(redirect_uris=()) if client == "none" else None
    error = page_error(chosen, **overrides)
    assert error.error == "invalid_request"
    assert error.reason == reason
    assert words in (error.error_description or "")


@pytest.mark.parametrize(
    "near_miss",
    [
        REDIRECT + "/",
        "https://APP.example.com/callback",
        "https://app.example.com/Callback",
        REDIRECT + "?x=1",
        REDIRECT + "#frag",
        "https://app.example.com@evil.example/callback",
        "https://evil.example@app.example.com/callback",
        "https://app.example.com.evil.example/callback",
        "https://evilapp.example.com/callback",
        "http://app.example.com/callback",
        "https://app.example.com:443/callback",
        "https://app.example.com/callback/../callback",
        "https://app.example.com/call%62ack",
        " " + REDIRECT,
        REDIRECT + "\t",
    ],
)
def test_redirect_uri_near_misses_are_page_errors(near_miss: str) -> None:
    error = page_error(redirect_uri=near_miss)
    assert error.reason == "redirect_uri_mismatch"
    assert error.error_description == "redirect_uri is not registered for this client"


def test_unknown_client_never_redirects_even_with_registered_looking_uri() -> None:
    parameters = AuthorizationParameters.from_http("GET", query())
    with pytest.raises(AuthorizationPageError):
        validate_authorization_request(parameters, None, issuer=ISSUER)
    # A client object for another id (a lookup mistake) is refused too.
    with pytest.raises(AuthorizationPageError, match="unknown client"):
        validate_authorization_request(parameters, web_client(client_id="x"), issuer=ISSUER)


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:51234/cb"),
        ("http://127.0.0.1/cb", "http://127.0.0.1:51234/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1/cb"),
        ("http://[::1]:8080/cb", "http://[::1]:9/cb"),
        ("http://127.0.0.1:8080/cb?x=1", "http://127.0.0.1:1/cb?x=1"),
    ],
)
def test_loopback_port_may_differ(registered: str, requested: str) -> None:
    assert match_redirect_uri(requested, (registered,)) == requested


@pytest.mark.parametrize(
    ("registered", "requested"),
    [
        ("http://localhost:8080/cb", "http://localhost:9/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:9/cb/"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:9/other"),
        ("http://127.0.0.1:8080/cb", "https://127.0.0.1:9/cb"),
        ("http://127.0.0.1:8080/cb", "http://[::1]:8080/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.2:8080/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:99999/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:8080@evil.example/cb"),
        ("http://127.0.0.1:8080/cb", "http://user@127.0.0.1:8080/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:80:80/cb"),
        ("http://127.0.0.1:8080/cb", "HTTP://127.0.0.1:9/cb"),
        ("http://127.0.0.1:8080/cb", "http://127.0.0.1:9/cb?x=1"),
        ("https://app.example/cb", "https://app.example:444/cb"),
    ],
)
def test_loopback_near_misses(registered: str, requested: str) -> None:
    with pytest.raises(AuthorizationPageError) as caught:
        match_redirect_uri(requested, (registered,))
    assert caught.value.reason == "redirect_uri_mismatch"


def test_redirect_uri_optional_with_one_registered_outside_openid() -> None:
    client = web_client(redirect_uris=(LOOPBACK,))
    request = validate(client, redirect_uri=None, scope="orders:read")
    assert (request.redirect_uri, request.redirect_uri_sent) == (LOOPBACK, False)


def test_redirect_uri_required_for_openid() -> None:
    client = web_client(redirect_uris=(REDIRECT,))
    with pytest.raises(AuthorizationRedirectError) as caught:
        validate(client, redirect_uri=None)
    assert caught.value.code == "invalid_request"
    assert "redirect_uri is required" in caught.value.location.replace("+", " ")


@pytest.mark.parametrize(
    ("overrides", "error", "words"),
    [
        ({"response_type": None}, "invalid_request", "missing parameter 'response_type'"),
        ({"response_type": "token"}, "unsupported_response_type", "response_type 'token' is not"),
        ({"response_type": "code id_token"}, "unsupported_response_type", "use code"),
        ({"response_mode": "fragment"}, "invalid_request", "response_mode 'fragment' is not"),
        ({"response_mode": "form_post"}, "invalid_request", "use query"),
        ({"code_challenge": None}, "invalid_request", "code_challenge is required"),
        ({"code_challenge_method": "plain"}, "invalid_request", "plain is not supported"),
        ({"code_challenge_method": None}, "invalid_request", "code_challenge_method is required"),
        ({"code_challenge": "short"}, "invalid_request", "43-character"),
        ({"scope": "openid admin"}, "invalid_scope", "scope 'admin' is not allowed"),
        ({"scope": 'openid "x"'}, "invalid_scope", "section 3.3"),
        ({"prompt": "none login"}, "invalid_request", "prompt=none cannot be combined"),
        ({"prompt": "select_account"}, "invalid_request", "prompt value 'select_account' is not"),
        ({"prompt": "create"}, "invalid_request", "prompt value 'create'"),
        ({"max_age": "-1"}, "invalid_request", "max_age must be a non-negative integer"),
        ({"max_age": "1.5"}, "invalid_request", "non-negative integer"),
        ({"max_age": "12345678901"}, "invalid_request", "non-negative integer"),
        ({"nonce": "n" * 1025}, "invalid_request", "nonce must be at most 1024"),
        ({"nonce": "a\nb"}, "invalid_request", "nonce must be"),
        ({"login_hint": "x" * 513}, "invalid_request", "login_hint must be at most 512"),
        ({"request": "eyJ..."}, "request_not_supported", "the request parameter is not supported"),
        ({"request_uri": "urn:x"}, "request_uri_not_supported", "request_uri parameter"),
        ({"registration": "{}"}, "registration_not_supported", "registration parameter"),
        ({"scope": ["openid", "profile"]}, "invalid_request", "parameter 'scope' repeated"),
        ({"unknown": ["1", "2"]}, "invalid_request", "parameter 'unknown' repeated"),
    ],
)
def test_other_problems_redirect_with_state_and_iss(
    overrides: dict[str, Any], error: str, words: str
) -> None:
    parameters = redirect_error(**overrides)
    assert parameters["error"] == error
    assert parameters["state"] == "af0ifjsldkj"
    assert words in parameters["error_description"]


def test_client_without_code_grant_is_unauthorized_client() -> None:
    client = web_client(grant_types=("client_credentials",))
    with pytest.raises(AuthorizationRedirectError) as caught:
        validate(client)
    assert caught.value.code == "unauthorized_client"
    assert caught.value.reason == "grant_not_allowed"


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (["a", "b"], "parameter 'state' repeated"),
        ("x" * 1025, "state must be at most 1024 printable ASCII"),
        ("caf\u00e9", "printable ASCII"),
    ],
)
def test_bad_state_is_not_echoed(state: str | list[str], words: str) -> None:
    parameters = redirect_error(state=state)
    assert parameters["error"] == "invalid_request"
    assert "state" not in parameters
    assert words in parameters["error_description"]


def test_state_bound_and_charset_accepted() -> None:
    assert validate(state="~" * 1024).state == "~" * 1024
    assert validate(state="a b").state == "a b"


def test_empty_parameters_count_as_omitted() -> None:
    request = validate(raw_query=query() + "&nonce=&prompt=&max_age=")
    assert (request.nonce, request.prompt, request.max_age) == (None, frozenset(), None)


def test_later_errors_become_redirects() -> None:
    request = validate()
    redirect = request.error(AccessDeniedError("the user denied the request"))
    assert response_parameters(redirect.location) == {
        "error": "access_denied",
        "error_description": "the user denied the request",
        "state": "af0ifjsldkj",
        "iss": ISSUER,
    }


async def test_authorization_request_looks_the_client_up() -> None:
    seen: list[str] = []

    async def find_client(client_id: str) -> Client | None:
        seen.append(client_id)
        return web_client() if client_id == "web" else None

    parameters = AuthorizationParameters.from_http("GET", query())
    request = await authorization_request(parameters, find_client=find_client, issuer=ISSUER)
    assert request.client_id == "web"
    with pytest.raises(AuthorizationPageError, match="unknown client"):
        await authorization_request(
            AuthorizationParameters.from_http("GET", query(client_id="nope")),
            find_client=find_client,
            issuer=ISSUER,
        )
    with pytest.raises(AuthorizationPageError, match="missing parameter 'client_id'"):
        await authorization_request(
            AuthorizationParameters.from_http("GET", query(client_id=None)),
            find_client=find_client,
            issuer=ISSUER,
        )
    assert seen == ["web", "nope"]


def test_a_page_error_is_never_wrapped_into_a_redirect(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.protocol.rfc6749.authorization as authorization

    def page(*_: object) -> AuthorizationRequest:
        raise AuthorizationPageError("late page error", reason="late")

    monkeypatch.setattr(authorization, "_checked", page)
    with pytest.raises(AuthorizationPageError) as caught:
        validate()
    assert not isinstance(caught.value, AuthorizationRedirectError)
    assert caught.value.reason == "late"
