"""Client certificates (mutual TLS): requesting them and reading the verified one.

- :func:`request_client_certificates` makes a server :class:`ssl.SSLContext`
  ask every client for a certificate and verify a presented one against the
  configured CA bundle (``CERT_OPTIONAL``: routes that do not use ``mtls`` keep
  working without one; a presented certificate that does not verify fails the
  handshake).
- :class:`ClientCertificate` is what the gateway needs of a verified
  certificate: the subject (RFC 4514), the subject alternative names, and the
  RFC 8705 §3.1 thumbprint ``x5t#S256`` (base64url SHA-256 of the DER).
"""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from bastion.crypto.errors import TLSConfigError

__all__ = ["ClientCertificate", "request_client_certificates", "x5t_s256"]


def x5t_s256(der: bytes) -> str:
    """The RFC 8705 ``x5t#S256`` thumbprint of a DER certificate."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def request_client_certificates(context: ssl.SSLContext, ca_file: Path) -> None:
    """Ask for client certificates on ``context`` and verify them against ``ca_file``.

    Raises :class:`TLSConfigError` when the CA bundle cannot be loaded.
    """
    try:
        context.load_verify_locations(cafile=os.fspath(ca_file))
    except (ssl.SSLError, OSError) as exc:
        raise TLSConfigError(f"tls.client_ca {ca_file} rejected by OpenSSL ({exc})") from None
    context.verify_mode = ssl.CERT_OPTIONAL


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A client certificate the TLS layer already verified."""

    subject: str
    sans: tuple[str, ...]
    thumbprint: str

    @classmethod
    def from_der(cls, der: bytes) -> ClientCertificate:
        """Read ``der``; raises ``ValueError`` when it is not a certificate."""
        cert = x509.load_der_x509_certificate(der)
        sans: list[str] = []
        try:
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            pass
        else:
            sans.extend(str(v) for v in ext.get_values_for_type(x509.UniformResourceIdentifier))
            sans.extend(ext.get_values_for_type(x509.DNSName))
            sans.extend(ext.get_values_for_type(x509.RFC822Name))
        return cls(cert.subject.rfc4514_string(), tuple(sans), x5t_s256(der))
