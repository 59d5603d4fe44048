"""Digest, comparison and token helpers."""

from __future__ import annotations

import base64
import re

import pytest

from bastion.crypto import constant_time_equals, random_token, sha256_hex


def test_sha256_hex_vector() -> None:
    # FIPS 180-2 "abc" test vector
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (b"secret", b"secret", True),
        ("secret", "secret", True),
        ("secret", b"secret", True),
        ("sécret", "sécret".encode(), True),
        ("sécret", "secret", False),
        (b"secret", b"secreT", False),
        (b"secret", b"secret ", False),
        ("", "", True),
        ("", "x", False),
    ],
)
def test_constant_time_equals(a: bytes | str, b: bytes | str, equal: bool) -> None:
    assert constant_time_equals(a, b) is equal


def test_random_token() -> None:
    token = random_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert len(base64.urlsafe_b64decode(token + "=")) == 32
    assert len({random_token() for _ in range(100)}) == 100
    assert len(random_token(16)) == 22


def test_random_token_refuses_short() -> None:
    with pytest.raises(ValueError) as info:
        random_token(8)
    assert str(info.value) == "random_token needs at least 16 bytes, got 8"


def test_hmac_sha256_hex_matches_rfc4231_case_2() -> None:
    from bastion.crypto.digests import hmac_sha256_hex

    # RFC 4231 §4.3, test case 2.
    assert hmac_sha256_hex("Jefe", b"what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
