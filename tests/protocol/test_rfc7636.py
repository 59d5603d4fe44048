"""PKCE (RFC 7636): S256 only, the grammar, constant-time verification, Appendix B's vector."""

from __future__ import annotations

import pytest

from bastion.protocol.rfc6749.errors import InvalidGrantError, InvalidRequestError
from bastion.protocol.rfc7636 import (
    CODE_CHALLENGE_METHODS,
    check_code_challenge,
    check_code_verifier,
    s256_challenge,
    verify_code_verifier,
)

# RFC 7636 Appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_appendix_b_vector() -> None:
    assert s256_challenge(VERIFIER) == CHALLENGE
    verify_code_verifier(VERIFIER, CHALLENGE)
    assert CODE_CHALLENGE_METHODS == ("S256",)


def test_challenge_accepted() -> None:
    assert check_code_challenge(CHALLENGE, "S256") == CHALLENGE


@pytest.mark.parametrize(
    ("challenge", "method", "reason", "words"),
    [
        (None, "S256", "pkce_missing", "code_challenge is required"),
        (None, None, "pkce_missing", "PKCE"),
        (CHALLENGE, None, "pkce_method_missing", "code_challenge_method is required"),
        (CHALLENGE, "plain", "pkce_method_unsupported", "must be S256 (plain is not supported)"),
        (CHALLENGE, "s256", "pkce_method_unsupported", "must be S256"),
        (CHALLENGE[:-1], "S256", "pkce_challenge_malformed", "43-character base64url"),
        (CHALLENGE + "A", "S256", "pkce_challenge_malformed", "43-character"),
        (CHALLENGE[:-1] + "=", "S256", "pkce_challenge_malformed", "43-character"),
        (CHALLENGE[:-1] + "+", "S256", "pkce_challenge_malformed", "43-character"),
    ],
)
def test_challenge_refused(
    challenge: str | None, method: str | None, reason: str, words: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_code_challenge(challenge, method)
    assert caught.value.error == "invalid_request"
    assert caught.value.reason == reason
    assert words in (caught.value.error_description or "")


@pytest.mark.parametrize("verifier", ["a" * 43, "Z" * 128, "0-._~" * 9])
def test_verifier_grammar_accepts(verifier: str) -> None:
    assert check_code_verifier(verifier) == verifier


@pytest.mark.parametrize(
    ("verifier", "reason"),
    [
        (None, "pkce_verifier_missing"),
        ("a" * 42, "pkce_verifier_malformed"),
        ("a" * 129, "pkce_verifier_malformed"),
        ("a" * 42 + "+", "pkce_verifier_malformed"),
        ("a" * 42 + " ", "pkce_verifier_malformed"),
        ("a" * 42 + "é", "pkce_verifier_malformed"),
        ("a" * 43 + "\n", "pkce_verifier_malformed"),
    ],
)
def test_verifier_grammar_refuses(verifier: str | None, reason: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        verify_code_verifier(verifier, CHALLENGE)
    assert caught.value.reason == reason


def test_wrong_verifier_is_invalid_grant() -> None:
    with pytest.raises(InvalidGrantError) as caught:
        verify_code_verifier(VERIFIER[:-1] + "l", CHALLENGE)
    assert caught.value.error == "invalid_grant"
    assert caught.value.reason == "pkce_mismatch"
    assert caught.value.error_description == "PKCE verification failed"


def test_plain_downgrade_does_not_verify() -> None:
    # A client sending the verifier itself as the "challenge" (plain) never matches S256.
    with pytest.raises(InvalidGrantError):
        verify_code_verifier(VERIFIER, VERIFIER)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.protocol.rfc7636 as rfc7636

    calls: list[tuple[object, object]] = []

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(rfc7636, "constant_time_equals", spy)
    verify_code_verifier(VERIFIER, CHALLENGE)
    assert calls == [(CHALLENGE, CHALLENGE)]
