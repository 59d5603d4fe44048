"""The signing_keys and tokens sections: durations, bounds and cross-checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.settings import SettingsError, load_settings


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_settings(path, {})


def test_defaults(tmp_path: Path) -> None:
    settings = _load(tmp_path, "{}\n")
    assert settings.signing_keys.algorithm == "ES256"
    assert settings.signing_keys.rotate_every is None
    assert settings.signing_keys.prepublish == 900
    assert settings.tokens.access_token_ttl == 900
    assert settings.tokens.leeway == 30


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90d", 7776000), ("12h", 43200), ("1.5h", 5400), ("2w", 1209600), (3600, 3600)],
)
def test_durations(tmp_path: Path, text: object, seconds: float) -> None:
    settings = _load(tmp_path, f"signing_keys: {{rotate_every: {text}}}\n")
    assert settings.signing_keys.rotate_every == seconds


def test_short_durations(tmp_path: Path) -> None:
    settings = _load(tmp_path, "tokens: {leeway: 250ms, access_token_ttl: 15m}\n")
    assert settings.tokens.leeway == 0.25
    assert settings.tokens.access_token_ttl == 900


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "tokens: {leeway: soon}",
            "tokens.leeway: 'soon' is not a duration — use seconds or e.g. 30s, 15m, 12h, 90d",
        ),
        (
            "signing_keys: {algorithm: HS256}",
            "signing_keys.algorithm: 'HS256' is not allowed — use 'ES256', 'RS256', 'PS256' or "
            "'EdDSA'",
        ),
        (
            "signing_keys: {jwks_max_age: 1h}",
            "signing_keys: jwks_max_age (3600s) is longer than prepublish (900s) — verifiers "
            "could see a token before its key; lower jwks_max_age or raise prepublish",
        ),
        (
            "signing_keys: {rotate_every: 10m}",
            "signing_keys: rotate_every (600s) is under an hour — use e.g. 30d or 90d",
        ),
        (
            "tokens: {access_token_ttl: 2h, max_access_token_ttl: 1h}",
            "tokens: access_token_ttl (7200s) exceeds max_access_token_ttl (3600s) — lower it or "
            "raise the maximum",
        ),
        ("signing_keys: {rsa_key_size: 1024}", "signing_keys.rsa_key_size: 1024 is too small"),
        # ring (the native gateway's assertion signer) signs with RSA keys up to 4096 bits.
        (
            "signing_keys: {rsa_key_size: 8192}",
            "signing_keys.rsa_key_size: 8192 is too large — use a number of at most 4096",
        ),
    ],
)
def test_bad_values(tmp_path: Path, text: str, line: str) -> None:
    with pytest.raises(SettingsError) as caught:
        _load(tmp_path, text + "\n")
    assert caught.value.errors[0].startswith(line), caught.value.errors
