"""End to end: a renewed server certificate is served without a restart.

``bastion serve`` starts with certificate A; the files are replaced by certificate B and
the server gets SIGHUP: a new TLS connection presents B (its serial number), while the
process and its listening socket stay the same.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import time
from pathlib import Path

from cryptography import x509

from _support import BastionProcess
from _support.tls import ScratchCA


def served_serial(port: int) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_of(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def setup(tmp_path: Path) -> tuple[Path, Path, Path, Path, Path]:
    ca = ScratchCA.create(tmp_path / "ca")
    cert_a, key_a = ca.issue("a", ("localhost", "127.0.0.1"))
    cert_b, key_b = ca.issue("b", ("localhost", "127.0.0.1"))
    live_cert, live_key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(cert_a, live_cert)
    shutil.copy(key_a, live_key)
    config = tmp_path / "bastion.yaml"
    config.write_text(
        f"storage: sqlite:///{tmp_path}/bastion.db\n"
        f"tls: {{cert: {live_cert}, key: {live_key}, reload_interval: 0}}\n"
    )
    return config, live_cert, live_key, cert_b, key_b


def replace_atomically(source: Path, target: Path) -> None:
    tmp = target.with_suffix(".new")
    shutil.copy(source, tmp)
    tmp.replace(target)


def test_sighup_serves_the_renewed_certificate(tmp_path: Path) -> None:
    config, live_cert, live_key, cert_b, key_b = setup(tmp_path)
    first = serial_of(live_cert)
    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        assert proc.proc is not None
        assert served_serial(proc.port) == first
        replace_atomically(key_b, live_key)
        replace_atomically(cert_b, live_cert)
        os.kill(proc.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        serial = served_serial(proc.port)
        while serial != serial_of(cert_b) and time.monotonic() < deadline:
            time.sleep(0.1)
            serial = served_serial(proc.port)
        assert serial == serial_of(cert_b)
        assert proc.proc.poll() is None  # same process, never restarted
    assert "TLS certificate reloaded from" in proc.stderr


def test_a_broken_renewal_keeps_the_previous_certificate(tmp_path: Path) -> None:
    config, live_cert, live_key, cert_b, _ = setup(tmp_path)
    first = serial_of(live_cert)
    with BastionProcess("-c", str(config), cwd=tmp_path) as proc:
        assert proc.proc is not None
        replace_atomically(cert_b, live_cert)  # B's certificate with A's key: mismatched
        os.kill(proc.proc.pid, signal.SIGHUP)
        time.sleep(1.0)  # let it (not) act
        assert served_serial(proc.port) == first
    assert "renewed TLS certificate refused, still serving the previous one" in proc.stderr
    assert f"tls.key {live_key} does not match tls.cert {live_cert}" in proc.stderr
