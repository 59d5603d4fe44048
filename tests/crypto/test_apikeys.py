"""The API key format: generation, offline checksum validation, digest, documented regex."""

from __future__ import annotations

import hashlib
import hmac
import re
import string
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.crypto import (
    API_KEY_PREFIX,
    API_KEY_REGEX,
    ApiKeyFormatError,
    CryptoError,
    ParsedApiKey,
    api_key_digest,
    generate_api_key,
    parse_api_key,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
environments = st.none() | st.from_regex(r"[a-z][a-z0-9]{0,9}", fullmatch=True)


def reason_of(key: object) -> str:
    with pytest.raises(ApiKeyFormatError) as info:
        parse_api_key(key)  # type: ignore[arg-type]
    error = info.value
    assert (error.code, error.status) == ("invalid_api_key", 401)
    assert error.detail == "the API key is not valid"
    assert isinstance(error, CryptoError)
    return error.reason


def test_shape_of_a_key() -> None:
    key = generate_api_key("live")
    assert key.startswith("bst_live_")
    assert len(key) == len("bst_live_") + 32 + 6
    assert re.fullmatch(API_KEY_REGEX, key)
    untagged = generate_api_key()
    assert untagged.startswith(API_KEY_PREFIX) and len(untagged) == 4 + 38
    assert parse_api_key(untagged) == ParsedApiKey(
        environment=None, display_prefix=untagged[: 4 + 6]
    )


def test_checksum_is_base62_crc32_of_everything_before_it() -> None:
    key = generate_api_key("test")
    body, checksum = key[:-6], key[-6:]
    value = 0
    for ch in checksum:
        value = value * 62 + BASE62.index(ch)
    assert value == zlib.crc32(body.encode())


def test_known_vector() -> None:
    # A fixed key, written out, so the format cannot drift unnoticed (docs/api-keys.md).
    body = "bst_live_" + "A" * 32
    crc = zlib.crc32(body.encode())
    digits = ""
    for _ in range(6):
        crc, d = divmod(crc, 62)
        digits = BASE62[d] + digits
    key = body + digits
    assert parse_api_key(key) == ParsedApiKey(environment="live", display_prefix="bst_live_AAAAAA")


@settings(max_examples=300)
@given(environments)
def test_generated_keys_always_parse(environment: str | None) -> None:
    key = generate_api_key(environment)
    parsed = parse_api_key(key)
    assert parsed.environment == environment
    head = "bst_" + (f"{environment}_" if environment else "")
    assert parsed.display_prefix == key[: len(head) + 6]
    assert re.fullmatch(API_KEY_REGEX, key)


@settings(max_examples=60)
@given(environments, st.data())
def test_every_single_character_change_is_refused(
    environment: str | None, data: st.DataObject
) -> None:
    key = generate_api_key(environment)
    for position in range(len(key)):
        # An offset rather than a filtered character: what is drawn must not depend on
        # the (random) key, or hypothesis could not replay an example.
        offset = data.draw(st.integers(1, 127), label=f"offset at {position}")
        other = chr((ord(key[position]) + offset) % 128)
        changed = key[:position] + other + key[position + 1 :]
        assert reason_of(changed) in {"malformed", "bad_checksum"}, (position, other)


@settings(max_examples=60)
@given(environments)
def test_every_base62_substitution_in_the_body_fails_the_checksum(
    environment: str | None,
) -> None:
    """Exhaustive over positions and replacement characters of the random part and checksum."""
    key = generate_api_key(environment)
    start = len(key) - 38
    for position in range(start, len(key)):
        for other in BASE62:
            if other == key[position]:
                continue
            changed = key[:position] + other + key[position + 1 :]
            with pytest.raises(ApiKeyFormatError) as info:
                parse_api_key(changed)
            assert info.value.reason == "bad_checksum"


def test_a_changed_environment_tag_fails_the_checksum() -> None:
    key = generate_api_key("live")
    assert reason_of("bst_test_" + key[len("bst_live_") :]) == "bad_checksum"
    assert reason_of("bst_" + key[len("bst_live_") :]) == "bad_checksum"


def test_100000_keys_are_unique() -> None:
    keys = {generate_api_key() for _ in range(100_000)}
    assert len(keys) == 100_000
    assert len({key[:10] for key in keys}) > 90_000  # display prefixes rarely collide


@pytest.mark.parametrize(
    "key",
    [
        "",
        "bst_",
        "bst_" + "a" * 37,
        "bst_" + "a" * 39,
        "BST_" + "a" * 38,
        "bcs_" + "a" * 38,
        "bst_Live_" + "a" * 38,
        "bst_abcdefghijk_" + "a" * 38,
        "bst_live-" + "a" * 38,
        " bst_" + "a" * 38,
        "bst_" + "a" * 38 + "\n",
        "bst_" + "a" * 37 + "é",
        "bst_" + "a" * 10_000,
    ],
)
def test_malformed_keys(key: str) -> None:
    assert reason_of(key) == "malformed"


def test_non_strings_are_malformed() -> None:
    assert reason_of(None) == "malformed"
    assert reason_of(b"bst_") == "malformed"


@given(st.text(max_size=80))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        parse_api_key(text)
    except ApiKeyFormatError as error:
        assert error.reason in {"malformed", "bad_checksum"}
        assert str(error) == "the API key is not valid"


def test_bad_environment_tag_is_refused_at_generation() -> None:
    for bad in ("", "Live", "1live", "abcdefghijk", "li_ve"):
        with pytest.raises(ValueError, match="environment tag"):
            generate_api_key(bad)


def test_digest_plain_and_peppered() -> None:
    key = generate_api_key()
    assert api_key_digest(key) == hashlib.sha256(key.encode()).hexdigest()
    peppered = api_key_digest(key, pepper=b"pepper")
    assert peppered == hmac.new(b"pepper", key.encode(), hashlib.sha256).hexdigest()
    assert peppered != api_key_digest(key) != api_key_digest(key, pepper=b"other")
    assert re.fullmatch(r"[0-9a-f]{64}", peppered)


def test_documented_regex_matches_the_code() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "api-keys.md"
    assert API_KEY_REGEX in doc.read_text(encoding="utf-8")
    # The regex finds keys inside surrounding text, as a secret scanner would.
    key = generate_api_key("live")
    found = re.findall(rf"\b{API_KEY_REGEX}\b", f'config = {{"token": "{key}"}}')
    assert found == [key]
