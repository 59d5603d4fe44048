"""bastion.reload: pid files, signalling, the certificate watcher, the reloader's refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from _support.tls import ScratchCA
from bastion.crypto import TLSConfigError
from bastion.errors import BastionError
from bastion.reload import (
    CertificateWatcher,
    Reloader,
    ReloadError,
    remove_pid_file,
    signal_reload,
    write_pid_file,
)


def test_pid_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "data" / "bastion.pid"
    write_pid_file(path)
    assert path.read_text() == f"{os.getpid()}\n"
    remove_pid_file(path)
    assert not path.exists()
    path.write_text("999999\n")  # another process's file is left alone
    remove_pid_file(path)
    assert path.exists()


def test_signal_reload_errors(tmp_path: Path) -> None:
    missing = tmp_path / "none.pid"
    with pytest.raises(ReloadError) as caught:
        signal_reload(missing)
    assert caught.value.detail == (
        f"no pid file at {missing} — is `bastion serve` running with this data_dir? "
        "(or give --pid-file)"
    )
    bad = tmp_path / "bad.pid"
    bad.write_text("hello")
    with pytest.raises(ReloadError) as caught:
        signal_reload(bad)
    assert caught.value.detail == f"pid file {bad} does not hold a process id — remove it"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / "stale.pid"
    stale.write_text(f"{gone.pid}\n")
    with pytest.raises(ReloadError) as caught:
        signal_reload(stale)
    assert caught.value.detail == (
        f"process {gone.pid} from {stale} is not running — remove the stale pid file"
    )


def test_certificate_watcher_loads_only_changed_valid_pairs(tmp_path: Path) -> None:
    ca = ScratchCA.create(tmp_path / "ca")
    cert_a, key_a = ca.issue("a", ("localhost",))
    cert_b, key_b = ca.issue("b", ("localhost",))
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(cert_a, cert)
    shutil.copy(key_a, key)
    watcher = CertificateWatcher(cert, key)
    assert watcher.check() is False  # unchanged
    shutil.copy(cert_b, cert)  # B's certificate, A's key
    assert watcher.changed()
    with pytest.raises(TLSConfigError):
        watcher.check()
    shutil.copy(key_b, key)
    assert watcher.check() is True
    assert watcher.reloads == 1
    assert watcher.check() is False


class FakeRuntime:
    def __init__(self, routes: list[Any]) -> None:
        self.settings = SimpleNamespace(routes=routes)
        self.reloaded: list[list[str]] = []

    def reload_routes(self, settings: Any) -> list[str]:
        names = [r for r in settings.routes]
        self.reloaded.append(names)
        return names


async def test_reloader_refuses_bad_settings_and_empty_route_lists(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bastion.settings import Settings

    runtime = FakeRuntime(["a"])

    def broken() -> Any:
        raise BastionError("routes[0].name: 'BAD' is not a route name")

    assert await Reloader(runtime, broken).reload() is False
    assert await Reloader(runtime, lambda: Settings()).reload() is False
    assert runtime.reloaded == []
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "reload refused, the current routes stay: routes[0].name: 'BAD' is not a route name",
        "reload refused, the current routes stay: the configuration has no routes (a "
        "half-written file?) — to remove every route, restart bastion",
    ]
