"""Record authentication tags (``bmac1``) under HKDF-derived keys of the master keyring."""

from __future__ import annotations

import pytest

from bastion.crypto import InvalidMacError, Keyring, MasterKey, RecordAuthenticator, derive_key

KEYRING = Keyring([MasterKey.generate()])


def test_sign_then_verify() -> None:
    auth = RecordAuthenticator(KEYRING, "audit-checkpoint")
    tag = auth.sign(b"record")
    assert tag.startswith(f"bmac1.{KEYRING.primary.key_id}.") and len(tag) == 6 + 17 + 64
    auth.verify(tag, b"record")
    assert not auth.needs_resign(tag)


@pytest.mark.parametrize(
    ("tag", "data", "reason"),
    [
        (None, b"record", "missing"),
        ("", b"record", "missing"),
        ("bmac1.zz.00", b"record", "malformed"),
        ("sha256:abc", b"record", "malformed"),
        ("TAG", b"other record", "mismatch"),
        (f"bmac1.{'0' * 16}.{'0' * 64}", b"record", "unknown_key"),
    ],
)
def test_bad_tags_raise_with_a_reason(tag: str | None, data: bytes, reason: str) -> None:
    auth = RecordAuthenticator(KEYRING, "audit-checkpoint")
    if tag == "TAG":
        tag = auth.sign(b"record")
    with pytest.raises(InvalidMacError) as raised:
        auth.verify(tag, data)
    assert raised.value.reason == reason


def test_purposes_and_master_keys_have_their_own_keys() -> None:
    tag = RecordAuthenticator(KEYRING, "audit-checkpoint").sign(b"record")
    with pytest.raises(InvalidMacError) as raised:
        RecordAuthenticator(KEYRING, "something-else").verify(tag, b"record")
    assert raised.value.reason == "mismatch"
    key = derive_key(KEYRING, "audit-checkpoint")
    assert len(key) == 32 and key != KEYRING.primary.material
    assert key != derive_key(KEYRING, "something-else")
    with pytest.raises(ValueError, match="short lower-case label"):
        derive_key(KEYRING, "Audit Checkpoint")


def test_rotation_verifies_old_tags_and_asks_to_sign_them_again() -> None:
    old_tag = RecordAuthenticator(KEYRING, "audit-checkpoint").sign(b"record")
    rotated = RecordAuthenticator(KEYRING.with_new_primary(), "audit-checkpoint")
    rotated.verify(old_tag, b"record")
    assert rotated.needs_resign(old_tag)
    assert not rotated.needs_resign(rotated.sign(b"record"))
    assert "material" not in repr(rotated) and KEYRING.primary.encode() not in repr(rotated)
