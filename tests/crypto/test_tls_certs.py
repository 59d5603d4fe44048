"""Development certificates, configured-certificate checks and the server SSL context."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests of bastion.crypto may inspect certificates with the library it wraps.
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.crypto import (
    TLSConfigError,
    ensure_dev_certificate,
    load_server_certificate,
    server_ssl_context,
)
from bastion.crypto import tls as tls_module

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def dev_pair(tmp_path: Path) -> tuple[Path, Path]:
    return ensure_dev_certificate(tmp_path / "tls")


def _shift_clock(monkeypatch: pytest.MonkeyPatch, delta: dt.timedelta) -> None:
    real = tls_module._utcnow
    monkeypatch.setattr(tls_module, "_utcnow", lambda: real() + delta)


# -- development certificate -------------------------------------------------------


@posix_only
def test_dev_certificate_contents(tmp_path: Path) -> None:
    before = dt.datetime.now(dt.UTC)
    cert_path, key_path = ensure_dev_certificate(tmp_path / "state" / "tls")
    assert cert_path == tmp_path / "state" / "tls" / "dev-cert.pem"
    assert key_path == tmp_path / "state" / "tls" / "dev-key.pem"
    assert _mode(key_path) == 0o600
    assert _mode(cert_path.parent) == 0o700

    cert = _cert(cert_path)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == "bastion development certificate"
    assert cert.issuer == cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    # backdated 5 minutes, valid 90 days
    backdate = before - cert.not_valid_before_utc
    assert dt.timedelta(minutes=4) < backdate <= dt.timedelta(minutes=5, seconds=1)
    lifetime = cert.not_valid_after_utc - before
    assert dt.timedelta(days=89, hours=23) < lifetime <= dt.timedelta(days=90, seconds=1)

    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_dev_certificate_custom_hosts(tmp_path: Path) -> None:
    cert_path, key_path = ensure_dev_certificate(tmp_path, ["Bastion.Test", "10.0.0.7"])
    info = load_server_certificate(cert_path, key_path)
    assert info.sans == ("bastion.test", "10.0.0.7")


def test_dev_certificate_needs_hosts(tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        ensure_dev_certificate(tmp_path, [])
    assert str(info.value) == "a development certificate needs at least one host name"


def test_dev_certificate_is_reused(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    cert_before = dev_pair[0].read_bytes()
    key_before = dev_pair[1].read_bytes()
    assert ensure_dev_certificate(tmp_path / "tls") == dev_pair
    # a subset of the hosts is covered too
    ensure_dev_certificate(tmp_path / "tls", ["localhost"])
    assert dev_pair[0].read_bytes() == cert_before
    assert dev_pair[1].read_bytes() == key_before


def _regenerated(directory: Path, before: bytes, hosts: tuple[str, ...] | None = None) -> bool:
    cert_path, key_path = (
        ensure_dev_certificate(directory)
        if hosts is None
        else ensure_dev_certificate(directory, hosts)
    )
    load_server_certificate(cert_path, key_path)  # the new pair is valid
    return cert_path.read_bytes() != before


def test_expired_dev_certificate_is_regenerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tls"
    with monkeypatch.context() as patch:
        _shift_clock(patch, -dt.timedelta(days=120))
        cert_path, key_path = ensure_dev_certificate(directory)
    with pytest.raises(TLSConfigError, match="expired on"):
        load_server_certificate(cert_path, key_path)
    assert _regenerated(directory, cert_path.read_bytes())
    assert _cert(cert_path).not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=89)


def test_expiring_dev_certificate_is_regenerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tls"
    with monkeypatch.context() as patch:
        _shift_clock(patch, -dt.timedelta(days=84))  # 6 days left
        cert_path, _ = ensure_dev_certificate(directory)
    assert _regenerated(directory, cert_path.read_bytes())


def test_dev_certificate_with_8_days_left_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tls"
    with monkeypatch.context() as patch:
        _shift_clock(patch, -dt.timedelta(days=82))
        cert_path, _ = ensure_dev_certificate(directory)
    assert not _regenerated(directory, cert_path.read_bytes())


def test_new_host_regenerates(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    before = dev_pair[0].read_bytes()
    assert _regenerated(tmp_path / "tls", before, ("localhost", "bastion.test"))
    assert "bastion.test" in load_server_certificate(*dev_pair).sans


@pytest.mark.parametrize("victim", [0, 1])
def test_corrupt_dev_files_are_regenerated(
    dev_pair: tuple[Path, Path], tmp_path: Path, victim: int
) -> None:
    before = dev_pair[0].read_bytes()
    dev_pair[victim].write_bytes(b"garbage")
    assert _regenerated(tmp_path / "tls", before)


def test_mismatched_dev_pair_is_regenerated(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_key = ensure_dev_certificate(tmp_path / "other")
    dev_pair[1].write_bytes(other_key.read_bytes())
    assert _regenerated(tmp_path / "tls", dev_pair[0].read_bytes())


def test_missing_dev_key_is_regenerated(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    dev_pair[1].unlink()
    assert _regenerated(tmp_path / "tls", dev_pair[0].read_bytes())
    assert dev_pair[1].exists()


@posix_only
def test_exposed_dev_key_is_regenerated(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    dev_pair[1].chmod(0o644)
    assert _regenerated(tmp_path / "tls", dev_pair[0].read_bytes())
    assert _mode(dev_pair[1]) == 0o600


# -- load_server_certificate ---------------------------------------------------------


def test_certificate_info(dev_pair: tuple[Path, Path]) -> None:
    cert_path, key_path = dev_pair
    info = load_server_certificate(cert_path, key_path)
    assert info.subject == "CN=bastion development certificate"
    assert info.self_signed
    assert info.sans == ("localhost", "127.0.0.1", "::1")
    assert info.not_after == _cert(cert_path).not_valid_after_utc
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    assert info.sha256_fingerprint == ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def test_chain_file_uses_first_certificate(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    other_cert, _ = ensure_dev_certificate(tmp_path / "other")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(dev_pair[0].read_bytes() + other_cert.read_bytes())
    assert load_server_certificate(chain, dev_pair[1]).sans == ("localhost", "127.0.0.1", "::1")


def test_garbage_certificate(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(garbage, dev_pair[1])
    assert info.value.code == "tls_config_invalid"
    assert str(info.value) == f"tls.cert {garbage} is not a PEM certificate"
    # a key where the certificate should be is not a certificate either
    with pytest.raises(TLSConfigError, match="is not a PEM certificate"):
        load_server_certificate(dev_pair[1], dev_pair[1])


def test_garbage_key(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(dev_pair[0], garbage)
    assert str(info.value) == f"tls.key {garbage} is not a PEM private key"
    with pytest.raises(TLSConfigError, match="is not a PEM private key"):
        load_server_certificate(dev_pair[0], dev_pair[0])


def test_encrypted_key(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(dev_pair[1].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(dev_pair[0], encrypted)
    assert str(info.value) == (
        f"tls.key {encrypted} is encrypted; provide it without a passphrase "
        "(and restrict the file to mode 0600)"
    )


def test_missing_files(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(missing, dev_pair[1])
    assert str(info.value) == f"tls.cert {missing} cannot be read (No such file or directory)"
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(dev_pair[0], missing)
    assert str(info.value) == f"tls.key {missing} cannot be read (No such file or directory)"


def test_mismatched_key(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    _, other_key = ensure_dev_certificate(tmp_path / "other")
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(dev_pair[0], other_key)
    assert str(info.value) == f"tls.key {other_key} does not match tls.cert {dev_pair[0]}"


def test_expired_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _shift_clock(patch, -dt.timedelta(days=200))
        cert_path, key_path = ensure_dev_certificate(tmp_path)
    expiry = _cert(cert_path).not_valid_after_utc
    with pytest.raises(TLSConfigError) as info:
        load_server_certificate(cert_path, key_path)
    assert str(info.value) == f"tls.cert {cert_path} expired on {expiry:%Y-%m-%d}"


def test_not_yet_valid_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        _shift_clock(patch, dt.timedelta(days=3))
        cert_path, key_path = ensure_dev_certificate(tmp_path)
    with pytest.raises(TLSConfigError, match=r"is not valid before .* UTC; check the system clock"):
        load_server_certificate(cert_path, key_path)


# -- server_ssl_context and a real handshake -------------------------------------------


def test_context_settings(dev_pair: tuple[Path, Path]) -> None:
    context = server_ssl_context(*dev_pair)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    for cipher in context.get_ciphers():
        assert cipher["aead"], cipher["name"]
        assert cipher["kea"] in {"kx-ecdhe", "kx-any"}, cipher["name"]
    assert server_ssl_context(*dev_pair, min_version="1.3").minimum_version == (
        ssl.TLSVersion.TLSv1_3
    )


def test_context_refuses_bad_settings(dev_pair: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TLSConfigError) as info:
        server_ssl_context(*dev_pair, min_version="1.1")
    assert str(info.value) == "tls.min_version must be '1.2' or '1.3', not '1.1'"
    _, other_key = ensure_dev_certificate(tmp_path / "other")
    with pytest.raises(TLSConfigError, match="does not match"):
        server_ssl_context(dev_pair[0], other_key)


class _EchoServer:
    """A one-connection TLS echo server on 127.0.0.1 in a thread."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(context,), daemon=True)
        self.thread.start()

    def _serve(self, context: ssl.SSLContext) -> None:
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(10)
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(tls.recv(64).upper())
        except (OSError, ssl.SSLError) as exc:
            self.error = exc

    def close(self) -> None:
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def echo_server(dev_pair: tuple[Path, Path]) -> Iterator[_EchoServer]:
    server = _EchoServer(server_ssl_context(*dev_pair))
    yield server
    server.close()


@pytest.mark.parametrize("server_name", ["localhost", "127.0.0.1"])
def test_real_handshake(dev_pair: tuple[Path, Path], tmp_path: Path, server_name: str) -> None:
    server = _EchoServer(server_ssl_context(*dev_pair))
    try:
        client = ssl.create_default_context(cafile=str(dev_pair[0]))
        client.verify_flags |= ssl.VERIFY_X509_STRICT
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            assert tls.version() in {"TLSv1.2", "TLSv1.3"}
            tls.sendall(b"hello bastion")
            assert tls.recv(64) == b"HELLO BASTION"
    finally:
        server.close()
    assert server.error is None


def test_handshake_tls12_client(echo_server: _EchoServer, dev_pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=str(dev_pair[0]))
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.2"
        cipher = tls.cipher()
        assert cipher is not None
        cipher_name = cipher[0]
        assert cipher_name.startswith("ECDHE-ECDSA-")
        assert "GCM" in cipher_name or "CHACHA20" in cipher_name
        tls.sendall(b"x")
        assert tls.recv(64) == b"X"


def test_client_without_the_dev_ca_refuses(echo_server: _EchoServer) -> None:
    client = ssl.create_default_context()
    with (
        socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client.wrap_socket(raw, server_hostname="localhost")


def test_wrong_hostname_refused(echo_server: _EchoServer, dev_pair: tuple[Path, Path]) -> None:
    client = ssl.create_default_context(cafile=str(dev_pair[0]))
    with (
        socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"),
    ):
        client.wrap_socket(raw, server_hostname="example.com")


def test_tls13_only_server_refuses_tls12_client(dev_pair: tuple[Path, Path]) -> None:
    server = _EchoServer(server_ssl_context(*dev_pair, min_version="1.3"))
    try:
        client = ssl.create_default_context(cafile=str(dev_pair[0]))
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
            pytest.raises(ssl.SSLError),
        ):
            client.wrap_socket(raw, server_hostname="localhost")
    finally:
        server.close()
    assert server.error is not None
