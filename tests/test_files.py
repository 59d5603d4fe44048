"""bastion.files: durable writes write everything, however little each ``os.write`` takes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion import files
from bastion.files import write_durably


def _write(path: Path, content: bytes) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        write_durably(fd, content)
    finally:
        os.close(fd)
    return fd


def test_writes_all_content_and_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write, synced = os.write, []

    def one_byte_at_a_time(fd: int, data: bytes | memoryview) -> int:
        return real_write(fd, bytes(data[:1]))

    monkeypatch.setattr(files.os, "write", one_byte_at_a_time)
    monkeypatch.setattr(files.os, "fsync", synced.append)
    fd = _write(tmp_path / "out", b"several bytes\n")
    assert (tmp_path / "out").read_bytes() == b"several bytes\n"
    assert synced == [fd]


def test_empty_content_only_syncs(tmp_path: Path) -> None:
    _write(tmp_path / "empty", b"")
    assert (tmp_path / "empty").read_bytes() == b""
