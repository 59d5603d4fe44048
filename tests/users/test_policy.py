"""The ASVS 5.0 password policy: lengths in characters, no composition rules, common passwords."""

from __future__ import annotations

import pytest

from bastion.settings.users import PasswordSettings
from bastion.users import PasswordPolicy, WeakPasswordError, common_passwords


def _policy(**settings: int) -> PasswordPolicy:
    return PasswordPolicy(PasswordSettings.model_validate(settings))


def _rule(policy: PasswordPolicy, password: str, username: str | None = None) -> str:
    with pytest.raises(WeakPasswordError) as info:
        policy.check(password, username=username)
    assert (info.value.code, info.value.status) == ("weak_password", 400)
    assert info.value.to_problem()["rule"] == info.value.rule
    return info.value.rule


def test_default_minimum_is_12() -> None:
    policy = _policy()
    assert _rule(policy, "q7v!mz0pw#x") == "too_short"  # 11
    policy.check("q7v!mz0pw#xk")  # 12


def test_seven_refused_and_eight_allowed_when_configured() -> None:
    policy = _policy(min_length=8)
    with pytest.raises(WeakPasswordError) as info:
        policy.check("q7v!mz0")
    assert info.value.rule == "too_short"
    assert info.value.detail == (
        "use at least 8 characters (this one has 7); a few unrelated words make a long "
        "password easy to remember"
    )
    policy.check("q7v!mz0p")


def test_length_counts_characters_not_bytes() -> None:
    policy = _policy(min_length=8)
    policy.check("ßüñéøåçë")  # 8 characters, 16 bytes
    assert _rule(policy, "🔑🔑🔑🔑🔑🔑🔑") == "too_short"  # 7 characters, 28 bytes


def test_long_passwords_allowed_up_to_the_maximum() -> None:
    policy = _policy()
    policy.check("a" * 129)  # ASVS: 128+ allowed
    policy.check("b" * 1024)
    with pytest.raises(WeakPasswordError) as info:
        policy.check("c" * 1025)
    assert info.value.rule == "too_long"
    assert info.value.detail == "use at most 1024 characters (this one has 1025)"


def test_no_composition_rules() -> None:
    policy = _policy()
    policy.check("correcthorsebatterystaple")  # lower-case letters only
    policy.check("4938 2211 7780 1123")  # digits and spaces


@pytest.mark.parametrize("password", ["password123", "PASSWORD123", "PassWord123", "Qwertyuiop"])
def test_common_password_refused_whatever_its_case(password: str) -> None:
    policy = _policy(min_length=8)
    with pytest.raises(WeakPasswordError) as info:
        policy.check(password)
    assert info.value.rule == "common"
    assert info.value.detail == (
        "this password is in a list of common or breached passwords; choose another"
    )


def test_the_bundled_list() -> None:
    words = common_passwords()
    assert len(words) > 10_000
    assert {"password", "12345678", "iloveyou", "trustno1"} <= words
    assert all(len(w) >= 8 and w == w.lower() for w in words)


def test_the_username_is_refused() -> None:
    assert _rule(_policy(), "Alice.Example.2026", username="alice.example.2026") == "username"


def test_a_lone_surrogate_is_refused_with_a_400() -> None:
    assert _rule(_policy(), "\ud800" + "x" * 20) == "unencodable"


def test_settings_bounds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="greater than or equal to 8"):
        PasswordSettings.model_validate({"min_length": 7})
    with pytest.raises(ValidationError, match="greater than or equal to 128"):
        PasswordSettings.model_validate({"max_length": 127})
