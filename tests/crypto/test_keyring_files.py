"""Master key files: loading, permission checks, creation and atomic replacement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bastion.crypto import (
    Keyring,
    MasterKey,
    MasterKeyError,
    create_keyring_file,
    load_keyring_file,
    write_keyring_file,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_load_multi_key_file_with_comments(tmp_path: Path) -> None:
    keys = [MasterKey.generate() for _ in range(3)]
    path = _write(
        tmp_path / "master.keys",
        "# rotated 2026-05-01\n\n"
        f"{keys[0].encode()}\n"
        f"   {keys[1].encode()}   \n"
        "  # old key, drop after re-wrap\n"
        f"{keys[2].encode()}",
    )
    keyring = load_keyring_file(path)
    assert keyring.key_ids == tuple(key.key_id for key in keys)
    assert keyring.primary == keys[0]
    # a value sealed under an older key still opens
    sealed = Keyring([keys[2]]).seal(b"old", context="c")
    assert keyring.open(sealed, context="c") == b"old"


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620, 0o602])
def test_permissive_file_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "master.keys", MasterKey.generate().encode() + "\n", mode)
    with pytest.raises(MasterKeyError) as info:
        load_keyring_file(path)
    assert info.value.code == "master_key_invalid"
    assert str(info.value) == f"master key file {path} has mode {mode:04o}; run chmod 600 {path}"


@posix_only
def test_owner_read_only_file_is_accepted(tmp_path: Path) -> None:
    key = MasterKey.generate()
    path = _write(tmp_path / "master.keys", key.encode(), 0o400)
    assert load_keyring_file(path).primary == key


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.keys"
    with pytest.raises(MasterKeyError) as info:
        load_keyring_file(path)
    assert str(info.value) == (
        f"master key file {path} does not exist; check secrets.master_key_file, "
        f"create it with `bastion secrets init-master-key {path}` (a new installation) "
        "or restore the file from your backup"
    )


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    with pytest.raises(MasterKeyError):
        load_keyring_file(directory)


def test_corrupt_line(tmp_path: Path) -> None:
    good = MasterKey.generate().encode()
    path = _write(tmp_path / "master.keys", f"# keys\n{good}\n\n{good[:-3]}\n")
    with pytest.raises(MasterKeyError) as info:
        load_keyring_file(path)
    assert str(info.value) == (
        f"master key file {path} is corrupt (line 4 is not a bastion master key); a new "
        "installation creates its key file with `bastion secrets init-master-key PATH` — if "
        "secrets were already sealed under this file, restore it from your backup instead"
    )
    assert good[5:-3] not in str(info.value)


def test_undecodable_bytes_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    path.write_bytes(MasterKey.generate().encode().encode() + b"\n\xff\xfe\n")
    path.chmod(0o600)
    with pytest.raises(MasterKeyError, match=r"\(line 2 is not a bastion master key\)"):
        load_keyring_file(path)


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n   \n"])
def test_empty_file(tmp_path: Path, content: str) -> None:
    path = _write(tmp_path / "master.keys", content)
    with pytest.raises(MasterKeyError) as info:
        load_keyring_file(path)
    assert str(info.value) == (
        f"master key file {path} contains no master key; restore it from your backup"
    )


def test_duplicate_key_in_file(tmp_path: Path) -> None:
    key = MasterKey.generate()
    path = _write(tmp_path / "master.keys", f"{key.encode()}\n{key.encode()}\n")
    with pytest.raises(MasterKeyError) as info:
        load_keyring_file(path)
    assert str(info.value) == (
        f"master key file {path}: master key {key.key_id} is listed twice in the keyring"
    )


# -- creation ----------------------------------------------------------------


@posix_only
def test_create_keyring_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets" / "master.keys"
    old_umask = os.umask(0o000)  # the created modes must not depend on the umask
    try:
        keyring = create_keyring_file(path)
    finally:
        os.umask(old_umask)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert len(keyring.key_ids) == 1
    assert load_keyring_file(path).key_ids == keyring.key_ids
    assert path.read_text().startswith("# bastion master keys")


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    first = create_keyring_file(path)
    before = path.read_bytes()
    with pytest.raises(MasterKeyError) as info:
        create_keyring_file(path)
    assert str(info.value) == f"master key file {path} already exists; refusing to overwrite it"
    assert path.read_bytes() == before
    assert load_keyring_file(path).key_ids == first.key_ids


def test_create_distinct_keys(tmp_path: Path) -> None:
    one = create_keyring_file(tmp_path / "a.keys")
    two = create_keyring_file(tmp_path / "b.keys")
    assert one.key_ids != two.key_ids


# -- atomic replacement --------------------------------------------------------


@posix_only
def test_write_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    original = create_keyring_file(path)
    inode_before = path.stat().st_ino
    rotating = original.with_new_primary()

    write_keyring_file(path, rotating)
    assert load_keyring_file(path).key_ids == rotating.key_ids
    assert _mode(path) == 0o600
    # renamed into place, not rewritten in place
    assert path.stat().st_ino != inode_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.keys"]

    write_keyring_file(path, rotating.only_primary())
    assert load_keyring_file(path).key_ids == (rotating.primary.key_id,)


def test_failed_write_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "master.keys"
    original = create_keyring_file(path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(MasterKeyError) as info:
        write_keyring_file(path, original.with_new_primary())
    monkeypatch.undo()
    assert str(info.value) == (
        f"master key file {path} cannot be written (No space left on device)"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.keys"]


def test_write_into_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "master.keys"
    with pytest.raises(MasterKeyError, match="cannot be written"):
        write_keyring_file(path, Keyring([MasterKey.generate()]))
    assert not path.parent.exists()


def test_rotation_sequence_keeps_every_value_readable(tmp_path: Path) -> None:
    """The documented rotate-master-key sequence, checked at each step."""
    path = tmp_path / "master.keys"
    keyring = create_keyring_file(path)
    stored = {
        f"row:{i}": keyring.seal(f"secret {i}".encode(), context=f"row:{i}") for i in range(3)
    }

    write_keyring_file(path, keyring.with_new_primary())  # step 1
    step1 = load_keyring_file(path)
    for context, sealed in stored.items():
        assert step1.open(sealed, context=context)  # a crash here still works
    stored = {context: step1.rewrap(sealed) for context, sealed in stored.items()}  # step 2
    write_keyring_file(path, step1.only_primary())  # step 3
    final = load_keyring_file(path)
    assert final.key_ids == (step1.primary.key_id,)
    for context, sealed in stored.items():
        assert final.open(sealed, context=context) == f"secret {context[4:]}".encode()
