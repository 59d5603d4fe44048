"""OpenID Connect Core: ID token claims, at_hash / c_hash vectors, the prompt and max_age rules."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.protocol.oidc.core import (
    UNSUPPORTED_PARAMETERS,
    ConsentRequiredError,
    Interaction,
    InteractionRequiredError,
    LoginRequiredError,
    ParameterNotSupportedError,
    id_token_claims,
    refuse_interaction,
    required_interaction,
    token_hash,
)

ISSUER = "https://auth.example.com"

# OIDC Core Appendix A.3 (at_hash) and A.4 (c_hash), RS256 -> SHA-256.
CORE_ACCESS_TOKEN = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
CORE_CODE = "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"
# panva/oidc-token-hash's README (the library openid-client checks hashes with).
PANVA_TOKEN = (
    "YmJiZTAwYmYtMzgyOC00NzhkLTkyOTItNjJjNDM3MGYzOWIy9sFhvH8K_x8UIHj1osisS57f5DduL-"
    "ar_qw5jl3lthwpMjm283aVMQXDmoqqqydDSqJfbhptzw8rUVwkuQbolw"
)


def test_token_hash_vectors() -> None:
    assert token_hash(CORE_ACCESS_TOKEN, "RS256") == "77QmUPtjPfzWtF2AnpK9RQ"
    assert token_hash(CORE_CODE, "RS256") == "LDktKdoQak3Pk0cnXxCltA"
    assert token_hash(PANVA_TOKEN, "RS256") == "x7vk7f6BvQj0jQHYFIk4ag"
    for alg in ("ES256", "PS256"):
        assert token_hash(PANVA_TOKEN, alg) == "x7vk7f6BvQj0jQHYFIk4ag"
    # EdDSA (Ed25519): SHA-512, left 32 bytes -> 43 characters.
    assert token_hash(PANVA_TOKEN, "EdDSA") == "EGEAhGYyfuwDaVTifvrWSoD5MSy_5hZPy6I7Vm-7pTQ"


@pytest.mark.parametrize("alg", ["HS256", "ES384", "none", "eddsa"])
def test_token_hash_unknown_alg(alg: str) -> None:
    with pytest.raises(ValueError, match="no token hash is defined"):
        token_hash("x", alg)


#: The arguments every ID token needs.
BASE: dict[str, Any] = {
    "issuer": ISSUER,
    "subject": "u1",
    "client_id": "app",
    "auth_time": 990.9,
    "ttl": 300,
    "now": 1000.5,
    "alg": "ES256",
}


def test_minimal_id_token() -> None:
    assert id_token_claims(**BASE) == {
        "iss": ISSUER,
        "sub": "u1",
        "aud": "app",
        "exp": 1300,
        "iat": 1000,
        "auth_time": 990,
    }


def test_full_id_token() -> None:
    claims = id_token_claims(
        **{**BASE, "alg": "RS256"},
        nonce="n-0S6_WzA2Mj",
        acr="urn:bastion:acr:pwd",
        amr=("pwd",),
        sid="s1",
        access_token=CORE_ACCESS_TOKEN,
        code=CORE_CODE,
        audiences=("app", "https://api.example.com"),
        extra={"email": "u@example.com"},
    )
    assert claims["aud"] == ["app", "https://api.example.com"]
    assert claims["azp"] == "app"
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert (claims["acr"], claims["amr"], claims["sid"]) == ("urn:bastion:acr:pwd", ["pwd"], "s1")
    assert claims["at_hash"] == "77QmUPtjPfzWtF2AnpK9RQ"
    assert claims["c_hash"] == "LDktKdoQak3Pk0cnXxCltA"
    assert claims["email"] == "u@example.com"


def test_single_audience_has_no_azp() -> None:
    claims = id_token_claims(**BASE, audiences=("app",), amr=())
    assert claims["aud"] == "app"
    assert "azp" not in claims
    assert "amr" not in claims


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ttl": 0}, "ttl must be positive"),
        ({"alg": "HS256"}, "no token hash is defined"),
        ({"extra": {"nonce": "x", "sub": "y"}}, "may not replace \\['nonce', 'sub'\\]"),
    ],
)
def test_id_token_mistakes(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        id_token_claims(**{**BASE, **changes})


def _interaction(
    prompt: frozenset[str] = frozenset(),
    max_age: int | None = None,
    auth_time: float | None = 900,
    consented_at: float | None = 800,
    requested_at: float = 1000,
    now: float = 1000,
) -> Interaction | None:
    return required_interaction(
        prompt=prompt,
        max_age=max_age,
        auth_time=auth_time,
        consented_at=consented_at,
        requested_at=requested_at,
        now=now,
    )


def test_session_and_consent_need_nothing() -> None:
    assert _interaction() is None


def test_no_session_needs_login() -> None:
    assert _interaction(auth_time=None) is Interaction.LOGIN


def test_max_age() -> None:
    # auth_time + max_age < now: re-authenticate; equal is still fine.
    assert _interaction(max_age=100) is None
    assert _interaction(max_age=99) is Interaction.LOGIN
    assert _interaction(max_age=0) is Interaction.LOGIN
    # A login during this request satisfies max_age=0 (else the user loops).
    assert _interaction(max_age=0, auth_time=1000, now=1005) is None


def test_prompt_login_and_consent() -> None:
    assert _interaction(prompt=frozenset({"login"})) is Interaction.LOGIN
    assert _interaction(prompt=frozenset({"login"}), auth_time=1001) is None
    assert _interaction(prompt=frozenset({"consent"})) is Interaction.CONSENT
    assert _interaction(prompt=frozenset({"consent"}), consented_at=1002) is None
    assert _interaction(consented_at=None) is Interaction.CONSENT
    assert _interaction(prompt=frozenset({"login", "consent"})) is Interaction.LOGIN


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"auth_time": None}, LoginRequiredError, "login_required"),
        ({"max_age": 10}, LoginRequiredError, "login_required"),
        ({"consented_at": None}, ConsentRequiredError, "consent_required"),
    ],
)
def test_prompt_none_outcomes(
    changes: dict[str, object], error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as caught:
        _interaction(prompt=frozenset({"none"}), **changes)  # type: ignore[arg-type]
    assert caught.value.error == code  # type: ignore[attr-defined]
    assert "prompt=none" in (caught.value.error_description or "")  # type: ignore[attr-defined]


def test_prompt_none_with_nothing_needed_passes() -> None:
    assert _interaction(prompt=frozenset({"none"})) is None


def test_refuse_other_interaction() -> None:
    with pytest.raises(InteractionRequiredError) as caught:
        refuse_interaction(Interaction.OTHER)
    assert caught.value.error == "interaction_required"
    assert caught.value.reason == "prompt_none_other"


def test_prompt_none_errors_are_interaction_required() -> None:
    assert issubclass(LoginRequiredError, InteractionRequiredError)
    assert issubclass(ConsentRequiredError, InteractionRequiredError)


@pytest.mark.parametrize("parameter", UNSUPPORTED_PARAMETERS)
def test_unsupported_parameter_codes(parameter: str) -> None:
    error = ParameterNotSupportedError(parameter)
    assert error.error == f"{parameter}_not_supported"
    assert error.reason == error.error
    assert error.error_description == f"the {parameter} parameter is not supported"


def test_unsupported_parameter_needs_a_known_code() -> None:
    with pytest.raises(ValueError, match="has no _not_supported error code"):
        ParameterNotSupportedError("claims")
