"""File checks: the modes of bastion's local files (data_dir, the SQLite database).

The data directory holds the development master key, the generated TLS key and
(by default) the SQLite database with key digests, sealed secrets and the audit
log; bastion creates them private (0700 / 0600). Files that already existed, or
that another tool created, may be readable by other local users: these checks
report a group or world permission bit on them. They only ``stat`` — nothing is
created or changed — and a missing file is not a finding.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from bastion.doctor.findings import Finding
from bastion.settings import Settings

__all__ = ["check_files"]

#: Permission bits for anyone but the owner.
_OTHERS: Final = stat.S_IRWXG | stat.S_IRWXO
#: SQLite's companion files, which hold recent pages of the database.
_SQLITE_COMPANIONS: Final = ("", "-wal", "-shm", "-journal")


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def _sqlite_path(settings: Settings) -> Path | None:
    from bastion.storage.sql.engine import parse_database_url

    try:
        return parse_database_url(settings.storage_url).sqlite_path
    except Exception:  # a malformed URL is reported by the store checks
        return None


def check_files(settings: Settings) -> Iterable[Finding]:
    """Findings for a data_dir or SQLite database (and -wal/-shm) others can access."""
    directory = settings.data_dir
    mode = _mode(directory)
    if mode is not None and mode & _OTHERS and directory.is_dir():
        yield Finding(
            "files.data_dir_mode",
            "medium",
            "the data directory is open to other users",
            f"data_dir {directory} has mode {mode:04o}: other local users can list it and read "
            "what it holds that is not private itself (development keys, the SQLite database, "
            "the pid file)",
            f"chmod 700 {directory}",
            (str(directory),),
        )
    database = _sqlite_path(settings)
    if database is None:
        return
    loose = []
    for suffix in _SQLITE_COMPANIONS:
        path = database.with_name(database.name + suffix)
        file_mode = _mode(path)
        if file_mode is not None and file_mode & _OTHERS:
            loose.append(f"{path} ({file_mode:04o})")
    if loose:
        yield Finding(
            "files.database_mode",
            "high",
            "the SQLite database is readable by other users",
            f"{', '.join(loose)}: the database holds API key and client secret digests, sealed "
            "signing keys and the audit log; its -wal/-shm files hold recent pages of it",
            f"chmod 600 {database}* (stop bastion first; new files take the database's mode)",
            tuple(loose),
        )
