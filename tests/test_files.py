"""bastion.files: durable writes write everything, however little each ``os.write`` takes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion import files
from bastion.files import write_durably


def test_writes_all_content_and_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write, synced = os.write, []

    def one_byte_at_a_time(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(files.os, "write", one_byte_at_a_time)
    monkeypatch.setattr(files.os, "fsync", synced.append)
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_durably(fd, b"several bytes\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"several bytes\n"
    assert synced == [fd]


def test_empty_content_only_syncs(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_durably(fd, b"")
    finally:
        os.close(fd)
    assert path.read_bytes() == b""
