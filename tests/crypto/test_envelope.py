"""Envelope encryption: sealing, context binding, tamper detection, rotation (re-wrap)."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.crypto import DecryptionError, Keyring, MasterKey, MasterKeyError, parse_keyring_text

SEALED_RE = re.compile(r"bse1\.[0-9a-f]{16}\.[A-Za-z0-9_-]{80}\.[A-Za-z0-9_-]+")
CONTEXT = "signing_keys.private_key:k1"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _keyring() -> Keyring:
    return Keyring([MasterKey.generate()])


# -- MasterKey -------------------------------------------------------------


def test_master_key_id_is_derived_from_material() -> None:
    material = bytes(range(32))
    key = MasterKey(material)
    assert key.key_id == hashlib.sha256(b"bastion-kek-id" + material).digest()[:8].hex()
    assert re.fullmatch(r"[0-9a-f]{16}", key.key_id)


def test_master_key_repr_hides_material() -> None:
    key = MasterKey.generate()
    text = repr(key) + str(key)
    assert key.key_id in text
    assert key.encode().removeprefix("bmk1:") not in text
    assert repr(key.material) not in text


def test_master_key_encode_parse_round_trip() -> None:
    key = MasterKey.generate()
    encoded = key.encode()
    assert re.fullmatch(r"bmk1:[A-Za-z0-9_-]{43}", encoded)
    assert MasterKey.parse(f"  {encoded}\n") == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "bmk1:",
        "bmk2:" + "A" * 43,
        "bmk1:" + "A" * 42,  # 31.5 bytes
        "bmk1:" + "A" * 44,  # 33 bytes
        "bmk1:" + "A" * 42 + "B",  # non-canonical last character (stray bits)
        "bmk1:" + "A" * 42 + "=",
        "bmk1:" + "+" * 43,  # standard, not url-safe alphabet
    ],
)
def test_master_key_parse_rejects(text: str) -> None:
    with pytest.raises(MasterKeyError) as info:
        MasterKey.parse(text)
    assert info.value.code == "master_key_invalid"
    assert str(info.value) == (
        "not a bastion master key (expected bmk1: followed by 43 base64url characters)"
    )


def test_master_key_wrong_length_material() -> None:
    with pytest.raises(MasterKeyError, match="exactly 32 bytes"):
        MasterKey(b"short")


def test_keyring_needs_a_key_and_no_duplicates() -> None:
    with pytest.raises(MasterKeyError) as info:
        Keyring([])
    assert str(info.value) == "a keyring needs at least one master key"
    key = MasterKey.generate()
    with pytest.raises(MasterKeyError) as info:
        Keyring([key, key])
    assert str(info.value) == f"master key {key.key_id} is listed twice in the keyring"


def test_keyring_repr_shows_only_ids() -> None:
    keyring = _keyring()
    assert repr(keyring) == f"Keyring(key_ids=('{keyring.primary.key_id}',))"


# -- seal / open -----------------------------------------------------------


def test_round_trip_and_format() -> None:
    keyring = _keyring()
    secret = b"-----BEGIN PRIVATE KEY----- top secret"
    sealed = keyring.seal(secret, context=CONTEXT)
    assert SEALED_RE.fullmatch(sealed)
    assert sealed.isascii()
    assert sealed.split(".")[1] == keyring.primary.key_id
    assert b"top secret" not in sealed.encode()
    assert keyring.open(sealed, context=CONTEXT) == secret


def test_each_seal_is_fresh() -> None:
    keyring = _keyring()
    first = keyring.seal(b"same", context=CONTEXT)
    second = keyring.seal(b"same", context=CONTEXT)
    assert first != second
    assert first.split(".")[2] != second.split(".")[2]
    assert first.split(".")[3] != second.split(".")[3]


def test_empty_plaintext() -> None:
    keyring = _keyring()
    assert keyring.open(keyring.seal(b"", context=CONTEXT), context=CONTEXT) == b""


def test_context_is_bound() -> None:
    keyring = _keyring()
    sealed = keyring.seal(b"totp seed", context="users.totp_seed:alice")
    with pytest.raises(DecryptionError) as info:
        keyring.open(sealed, context="users.totp_seed:mallory")
    assert info.value.code == "decryption_failed"
    assert str(info.value) == (
        "sealed value for users.totp_seed:mallory could not be decrypted: "
        "it was altered or belongs to another record"
    )


def test_empty_context_is_refused() -> None:
    keyring = _keyring()
    with pytest.raises(ValueError, match="non-empty context"):
        keyring.seal(b"x", context="")
    sealed = keyring.seal(b"x", context=CONTEXT)
    with pytest.raises(ValueError, match="non-empty context"):
        keyring.open(sealed, context="")


def test_tampering_any_character_is_detected() -> None:
    keyring = _keyring()
    sealed = keyring.seal(b"a secret of some length", context=CONTEXT)
    for index, char in enumerate(sealed):
        for replacement in {B64URL[(B64URL.find(char) + 1) % 64], "."}:
            if replacement == char:
                continue
            tampered = sealed[:index] + replacement + sealed[index + 1 :]
            with pytest.raises(DecryptionError) as info:
                keyring.open(tampered, context=CONTEXT)
            assert "could not be decrypted" in str(info.value), (index, replacement)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:-1],
        lambda s: s[:-4],
        lambda s: s + "A",
        lambda s: s + ".",
        lambda s: s + ".AAAA",
        lambda s: ".".join(s.split(".")[:3]),
        lambda s: "bse2" + s[4:],
        lambda s: s.replace(".", ":"),
        lambda s: s.upper(),
        lambda s: "",
        lambda s: "not a sealed value",
    ],
)
def test_malformed_values_are_refused(mutate: object) -> None:
    keyring = _keyring()
    sealed = keyring.seal(b"secret", context=CONTEXT)
    tampered = mutate(sealed)  # type: ignore[operator]
    with pytest.raises(DecryptionError) as info:
        keyring.open(tampered, context=CONTEXT)
    assert info.value.code == "decryption_failed"


def test_malformed_message() -> None:
    with pytest.raises(DecryptionError) as info:
        _keyring().open("bse1.nothing", context=CONTEXT)
    assert str(info.value) == (
        "sealed value could not be decrypted: it is not in the "
        "bse1.<key id>.<wrapped key>.<data> format (truncated or corrupted)"
    )


def test_swapping_parts_between_values_fails() -> None:
    keyring = _keyring()
    one = keyring.seal(b"one", context=CONTEXT).split(".")
    two = keyring.seal(b"two", context=CONTEXT).split(".")
    # wrapped key of one, data of two: the data key does not fit the data
    with pytest.raises(DecryptionError, match="altered or belongs to another record"):
        keyring.open(".".join([*one[:3], two[3]]), context=CONTEXT)


def test_wrapped_key_tamper_message() -> None:
    keyring = _keyring()
    parts = keyring.seal(b"x", context=CONTEXT).split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[2]))
    raw[20] ^= 1
    parts[2] = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(DecryptionError) as info:
        keyring.open(".".join(parts), context=CONTEXT)
    kid = keyring.primary.key_id
    assert str(info.value) == (
        f"sealed value could not be decrypted: its data key (wrapped by master key {kid}) "
        "was altered"
    )


def test_unknown_key_id_message() -> None:
    sealer = _keyring()
    sealed = sealer.seal(b"x", context=CONTEXT)
    with pytest.raises(DecryptionError) as info:
        _keyring().open(sealed, context=CONTEXT)
    kid = sealer.primary.key_id
    assert str(info.value) == (
        f"sealed value could not be decrypted: master key {kid} that sealed it is not loaded; "
        "add that key to the master key file after the primary key"
    )
    assert info.value.extra == {"key_id": kid}


def test_the_wrap_binds_the_key_id() -> None:
    # Relabelling a value with another loaded key's id must not work either.
    first, second = MasterKey.generate(), MasterKey.generate()
    keyring = Keyring([first, second])
    parts = keyring.seal(b"x", context=CONTEXT).split(".")
    parts[1] = second.key_id
    with pytest.raises(DecryptionError, match="was altered"):
        keyring.open(".".join(parts), context=CONTEXT)


@settings(max_examples=60, deadline=None)
@given(plaintext=st.binary(max_size=2048), context=st.text(min_size=1, max_size=80))
def test_round_trip_arbitrary(plaintext: bytes, context: str) -> None:
    keyring = Keyring([MasterKey(b"\x07" * 32)])
    sealed = keyring.seal(plaintext, context=context)
    assert SEALED_RE.fullmatch(sealed)
    assert keyring.open(sealed, context=context) == plaintext


@settings(max_examples=100, deadline=None)
@given(junk=st.text(max_size=200))
def test_open_never_crashes_on_junk(junk: str) -> None:
    with pytest.raises(DecryptionError):
        Keyring([MasterKey(b"\x07" * 32)]).open(junk, context=CONTEXT)


# -- rotation --------------------------------------------------------------


def test_rewrap_moves_value_to_new_primary() -> None:
    old = _keyring()
    sealed = old.seal(b"signing key", context=CONTEXT)
    rotating = old.with_new_primary()
    assert rotating.key_ids == (rotating.primary.key_id, old.primary.key_id)
    assert rotating.needs_rewrap(sealed)

    rewrapped = rotating.rewrap(sealed)
    assert rotating.key_id_of(rewrapped) == rotating.primary.key_id
    assert not rotating.needs_rewrap(rewrapped)
    # only the wrapped data key changes
    assert rewrapped.split(".")[3] == sealed.split(".")[3]
    assert rewrapped.split(".")[2] != sealed.split(".")[2]

    final = rotating.only_primary()
    assert final.key_ids == (rotating.primary.key_id,)
    assert final.open(rewrapped, context=CONTEXT) == b"signing key"
    # the context is still bound after a re-wrap
    with pytest.raises(DecryptionError, match="altered or belongs to another record"):
        final.open(rewrapped, context="other")
    # the old keyring alone cannot open the re-wrapped value ...
    with pytest.raises(DecryptionError, match=f"master key {final.primary.key_id} that sealed"):
        old.open(rewrapped, context=CONTEXT)
    # ... and the new key alone cannot open the value that was not re-wrapped
    with pytest.raises(DecryptionError, match=f"master key {old.primary.key_id} that sealed"):
        final.open(sealed, context=CONTEXT)


def test_rewrap_of_current_value_is_unchanged() -> None:
    keyring = _keyring()
    sealed = keyring.seal(b"x", context=CONTEXT)
    assert keyring.rewrap(sealed) == sealed
    assert not keyring.needs_rewrap(sealed)


def test_rewrap_refuses_tampered_or_unknown() -> None:
    keyring = _keyring()
    sealed = keyring.seal(b"x", context=CONTEXT)
    with pytest.raises(DecryptionError, match="that sealed it is not loaded"):
        _keyring().rewrap(sealed)
    parts = sealed.split(".")
    parts[2] = parts[2][:10] + ("A" if parts[2][10] != "A" else "B") + parts[2][11:]
    with pytest.raises(DecryptionError, match="was altered"):
        keyring.with_new_primary().rewrap(".".join(parts))
    with pytest.raises(DecryptionError, match="format"):
        keyring.rewrap("garbage")


def test_key_id_of_and_needs_rewrap_refuse_garbage() -> None:
    keyring = _keyring()
    with pytest.raises(DecryptionError):
        keyring.key_id_of("bse1.xyz")
    with pytest.raises(DecryptionError):
        keyring.needs_rewrap("")


# -- keyrings from text (env:) ---------------------------------------------


def test_parse_keyring_text_separators() -> None:
    keys = [MasterKey.generate() for _ in range(3)]
    text = f" {keys[0].encode()},{keys[1].encode()}\n\t {keys[2].encode()} ,\n"
    keyring = parse_keyring_text(text, "env:BASTION_MASTER_KEYS")
    assert keyring.key_ids == tuple(key.key_id for key in keys)
    assert keyring.primary == keys[0]


def test_parse_keyring_text_errors() -> None:
    with pytest.raises(MasterKeyError) as info:
        parse_keyring_text(" ,\n", "env:BASTION_MASTER_KEYS")
    assert str(info.value) == (
        "env:BASTION_MASTER_KEYS contains no master key; set it to one or more bmk1: keys"
    )
    good = MasterKey.generate().encode()
    with pytest.raises(MasterKeyError) as info:
        parse_keyring_text(f"{good},bmk1:secretbutbroken", "env:BASTION_MASTER_KEYS")
    assert str(info.value) == (
        "env:BASTION_MASTER_KEYS is corrupt (item 2 is not a bastion master key); "
        "each key is bmk1: followed by 43 base64url characters — create one with "
        "`bastion secrets init-master-key PATH` and point secrets.master_key_file at it"
    )
    assert "secretbutbroken" not in str(info.value)
