"""TLS material: the development certificate, checks of configured certificates, server contexts.

In development bastion serves HTTPS with a self-signed ECDSA P-256 certificate
that it generates (and reuses) under its state directory. Configured
certificates are validated at start-up so that a wrong file fails with one
clear line naming the setting, instead of an OpenSSL stack trace at the first
handshake.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.crypto.errors import TLSConfigError
from bastion.files import write_durably

__all__ = [
    "DEV_CERT_NAME",
    "DEV_KEY_NAME",
    "CertificateInfo",
    "certificate_serial",
    "ensure_dev_certificate",
    "load_server_certificate",
    "server_ssl_context",
    "upstream_ssl_context",
]

DEV_CERT_NAME = "dev-cert.pem"
DEV_KEY_NAME = "dev-key.pem"
_DEV_COMMON_NAME = "bastion development certificate"
_DEV_VALIDITY = dt.timedelta(days=90)
_DEV_BACKDATE = dt.timedelta(minutes=5)
_DEV_RENEW_BEFORE = dt.timedelta(days=7)

# TLS 1.2 suites: ECDHE key exchange with AEAD ciphers only. TLS 1.3 suites are all AEAD.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS:!RSAPSK:!PSK"


@dataclass(frozen=True)
class CertificateInfo:
    """What start-up logs and ``bastion doctor`` show about a server certificate.

    ``sans`` lists DNS names and IP addresses as text; ``sha256_fingerprint``
    is colon-separated upper-case hex, as ``openssl x509 -fingerprint -sha256``
    prints it.
    """

    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    sha256_fingerprint: str

    @property
    def self_signed(self) -> bool:
        """True when the certificate is its own issuer (like the development certificate)."""
        return self.subject == self.issuer


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _sans_of(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = [name.lower() for name in ext.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return tuple(dns + ips)


def _info(cert: x509.Certificate) -> CertificateInfo:
    digest = cert.fingerprint(hashes.SHA256())
    return CertificateInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        sans=_sans_of(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=":".join(f"{byte:02X}" for byte in digest),
    )


def _public_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    public = key.public_key()
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"tls.cert {path} cannot be read ({exc.strerror})") from None
    try:
        # A chain file is fine: the first certificate is the server's own.
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigError(f"tls.cert {path} is not a PEM certificate") from None
    return chain[0]


def _read_private_key(path: Path) -> PrivateKeyTypes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TLSConfigError(f"tls.key {path} cannot be read ({exc.strerror})") from None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSConfigError(
            f"tls.key {path} is encrypted; provide it without a passphrase "
            "(and restrict the file to mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(f"tls.key {path} is not a PEM private key") from None


def load_server_certificate(cert: Path, key: Path) -> CertificateInfo:
    """Check a configured certificate / key pair and describe the certificate.

    Raises:
        TLSConfigError: a file is unreadable or not PEM, the key does not match
            the certificate, or the certificate is expired or not yet valid.
    """
    cert, key = Path(cert), Path(key)
    certificate = _read_certificate(cert)
    private_key = _read_private_key(key)
    try:
        matches = _public_der(private_key) == _public_der(certificate)
    except (AttributeError, ValueError):
        matches = False
    if not matches:
        raise TLSConfigError(f"tls.key {key} does not match tls.cert {cert}")
    info = _info(certificate)
    now = _utcnow()
    if info.not_after <= now:
        raise TLSConfigError(f"tls.cert {cert} expired on {info.not_after:%Y-%m-%d}")
    if info.not_before > now:
        raise TLSConfigError(
            f"tls.cert {cert} is not valid before {info.not_before:%Y-%m-%d %H:%M} UTC; "
            "check the system clock"
        )
    return info


def server_ssl_context(cert: Path, key: Path, min_version: str = "1.2") -> ssl.SSLContext:
    """Build a server-side :class:`ssl.SSLContext`: TLS 1.2+ only, AEAD ciphers, no compression.

    The pair is validated first with :func:`load_server_certificate`.

    Raises:
        TLSConfigError: ``min_version`` is not "1.2" or "1.3", or the
            certificate / key is unusable.
    """
    versions = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
    if min_version not in versions:
        raise TLSConfigError(f"tls.min_version must be '1.2' or '1.3', not {min_version!r}")
    load_server_certificate(cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = versions[min_version]
    context.options |= (
        ssl.OP_NO_COMPRESSION
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_SINGLE_ECDH_USE
        | ssl.OP_NO_RENEGOTIATION
    )
    context.set_ciphers(_TLS12_CIPHERS)
    try:
        context.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key))
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(
            f"tls.cert {cert} / tls.key {key} rejected by OpenSSL ({exc})"
        ) from None
    return context


def upstream_ssl_context(
    ca: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    *,
    where: str = "upstream",
) -> ssl.SSLContext:
    """Build a client-side context for https upstreams: verified, TLS 1.2+, hostname checked.

    ``ca`` (a PEM bundle) replaces the system trust store; ``client_cert`` /
    ``client_key`` present a client certificate (upstream mTLS). ``where``
    names the setting in error messages (e.g. ``routes[orders]``).

    Raises:
        TLSConfigError: a file is unreadable or rejected by OpenSSL.
    """
    if ca is not None:
        try:
            context = ssl.create_default_context(cafile=os.fspath(ca))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TLSConfigError(
                f"{where}.upstream_ca {ca} is not a usable PEM CA bundle ({exc})"
            ) from None
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if client_cert is not None and client_key is not None:
        try:
            context.load_cert_chain(certfile=os.fspath(client_cert), keyfile=os.fspath(client_key))
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"{where}.upstream_client_cert {client_cert} / upstream_client_key {client_key} "
                f"rejected by OpenSSL ({exc})"
            ) from None
    return context


def certificate_serial(cert: Path) -> int:
    """The serial number of the first certificate in the PEM file ``cert``.

    Raises:
        TLSConfigError: the file is unreadable or not PEM.
    """
    return _read_certificate(Path(cert)).serial_number


# -- development certificate ------------------------------------------------


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host.lower())


def _normalise_host(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host.lower()


def _dev_certificate_usable(cert_path: Path, key_path: Path, hosts: Sequence[str]) -> bool:
    """Tell whether the existing development pair can be reused (a cache check, not security)."""
    try:
        if os.name == "posix" and key_path.stat().st_mode & 0o077:
            return False  # the key may have been read by others; make a new one
        info = load_server_certificate(cert_path, key_path)
    except (OSError, TLSConfigError):
        return False
    if info.not_after - _utcnow() < _DEV_RENEW_BEFORE:
        return False
    return {_normalise_host(host) for host in hosts} <= set(info.sans)


def _write_atomic(path: Path, content: bytes, mode: int) -> None:
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            if os.name == "posix":
                os.fchmod(fd, mode)
            write_durably(fd, content)
        finally:
            os.close(fd)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _generate_dev_pair(hosts: Sequence[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _DEV_COMMON_NAME)])
    now = _utcnow()
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        # backdated so that clients with a slightly slow clock accept it at once
        .not_valid_before(now - _DEV_BACKDATE)
        .not_valid_after(now + _DEV_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([_san_entry(host) for host in hosts]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_dev_certificate(
    directory: Path, hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1")
) -> tuple[Path, Path]:
    """Return ``(cert, key)`` paths of a usable self-signed development certificate.

    Reuses ``dev-cert.pem`` / ``dev-key.pem`` in ``directory`` unless they are
    unreadable, mismatched, expiring within 7 days, the key is accessible to
    group or others, or their SANs do not cover every entry of ``hosts``;
    otherwise generates a new ECDSA P-256 pair valid for 90 days. The
    directory is created with mode 0700, the key written with mode 0600.

    Raises:
        TLSConfigError: ``hosts`` is empty, or the files cannot be written.
    """
    if not hosts:
        raise TLSConfigError("a development certificate needs at least one host name")
    directory = Path(directory)
    cert_path, key_path = directory / DEV_CERT_NAME, directory / DEV_KEY_NAME
    try:
        if not directory.exists():
            directory.mkdir(parents=True, mode=0o700)
            directory.chmod(0o700)
        if _dev_certificate_usable(cert_path, key_path, hosts):
            return cert_path, key_path
        cert_pem, key_pem = _generate_dev_pair(hosts)
        # Key first: a crash between the two writes leaves a mismatched pair,
        # which the next start detects and regenerates.
        _write_atomic(key_path, key_pem, 0o600)
        _write_atomic(cert_path, cert_pem, 0o644)
    except OSError as exc:
        raise TLSConfigError(
            f"cannot write the development certificate in {directory} ({exc.strerror})"
        ) from None
    return cert_path, key_path
