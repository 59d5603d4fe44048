"""Durable writes to an open file: the one loop every writer of secrets and logs uses.

A foundation like :mod:`bastion.errors`: it imports nothing of bastion, so every
layer may use it (the master key file, the development TLS key, the JSON-lines
audit sink).
"""

from __future__ import annotations

import os

__all__ = ["write_durably"]


def write_durably(fd: int, content: bytes) -> None:
    """Write all of ``content`` to ``fd`` and ``fsync`` it; the caller closes ``fd``.

    ``os.write`` may write less than it is given (a signal, a full pipe or disk), so it
    is called until everything is written. Raises ``OSError`` as ``os.write`` does.
    """
    view = memoryview(content)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    os.fsync(fd)
