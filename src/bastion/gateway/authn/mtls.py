"""The ``mtls`` authentication method and RFC 8705 certificate-bound tokens.

The native front asks every client for a certificate and verifies a presented
one against ``tls.client_ca`` during the handshake; the verified leaf reaches
the ASGI app (``bastion.http.middleware.native_front``) through the ASGI TLS
extension, ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM, leaf
first). This module never verifies a chain itself: a certificate in the scope
is one the TLS layer accepted.

- :class:`MtlsAuthenticator`: no certificate → not responsible; otherwise
  the identity's ``subject`` is the first URI / DNS / e-mail SAN (SPIFFE IDs
  are URI SANs), else the RFC 4514 subject; its claims carry ``sub``,
  ``cert_subject``, ``cert_sans`` and ``cnf: {"x5t#S256": …}``.
- :func:`check_binding` (RFC 8705 §3): a token whose claims hold
  ``cnf.x5t#S256`` is accepted only over a connection presenting the
  certificate with that thumbprint; anything else is 401 ``invalid_token``.
  A token bound to anything else — a DPoP key (``cnf.jkt``, RFC 9449 §6) or
  any other confirmation method — is refused too (``cnf_unsupported``): the
  gateway verifies no DPoP proof, and a sender-constrained token used as a
  plain bearer token is exactly what the binding exists to stop.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from bastion.crypto import ClientCertificate, constant_time_equals, x5t_s256
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authn.jwt import InvalidBearerTokenError

__all__ = ["MtlsAuthenticator", "check_binding", "peer_certificate_der"]

_CERT_KEY = "bastion.client_cert"


def peer_certificate_der(scope: MutableMapping[str, Any]) -> bytes | None:
    """The DER of the verified client certificate of this request, or None."""
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls:
        return None
    chain = tls.get("client_cert_chain")
    if not chain:
        return None
    try:
        return ssl.PEM_cert_to_DER_cert(chain[0])
    except (ValueError, TypeError):
        return None


def _thumbprint(scope: MutableMapping[str, Any]) -> str | None:
    der = peer_certificate_der(scope)
    return x5t_s256(der) if der is not None else None


def check_binding(scope: MutableMapping[str, Any], claims: Mapping[str, Any]) -> None:
    """Return if the token is unbound or bound to this request's certificate.

    Raises :class:`InvalidBearerTokenError` (``cnf_mismatch``) when the token
    is certificate-bound (``cnf.x5t#S256``) and the request presents no
    certificate or another one; ``cnf_unsupported`` when it is bound in any
    other way (``cnf.jkt`` of DPoP …: no proof is verified here, so it is not
    accepted as a plain bearer token); ``malformed`` for an unreadable ``cnf``.
    """
    cnf = claims.get("cnf")
    if cnf is None:
        return
    if not isinstance(cnf, Mapping):
        raise InvalidBearerTokenError("malformed")
    if any(member != "x5t#S256" for member in cnf):
        raise InvalidBearerTokenError("cnf_unsupported")
    bound = cnf.get("x5t#S256")
    if bound is None:
        return  # "cnf": {} binds to nothing
    if not isinstance(bound, str):
        raise InvalidBearerTokenError("malformed")
    presented = _thumbprint(scope)
    if presented is None or not constant_time_equals(presented, bound):
        raise InvalidBearerTokenError("cnf_mismatch")


class MtlsAuthenticator:
    """Authenticates requests by their verified client certificate (see the module docstring).

    ``push`` (the runtime passes :func:`bastion.gateway.native_push.cert_identity`)
    receives every identity this authenticator vouches with: the native data plane
    caches it by the certificate's thumbprint and serves that certificate's later
    requests itself (it has no X.509 parser of its own).
    """

    method = "mtls"

    def __init__(
        self, cache_size: int = 10_000, push: Callable[[Identity], None] | None = None
    ) -> None:
        self.cache_size = cache_size
        self.push = push
        # DER -> identity: parsing a certificate costs ~50 µs; connections repeat it.
        self._cache: dict[bytes, Identity] = {}

    def identify(self, der: bytes) -> Identity:
        """The identity of the verified certificate ``der`` (pushed to ``push``).

        Raises :class:`InvalidBearerTokenError` (``malformed``) when it cannot be read.
        """
        identity = self._cache.get(der)
        if identity is None:
            try:
                cert = ClientCertificate.from_der(der)
            except ValueError:
                raise InvalidBearerTokenError("malformed") from None
            subject = cert.sans[0] if cert.sans else cert.subject
            identity = Identity(
                method="mtls",
                subject=subject,
                claims={
                    "sub": subject,
                    "cert_subject": cert.subject,
                    "cert_sans": list(cert.sans),
                    "cnf": {"x5t#S256": cert.thumbprint},
                },
            )
            cache = self._cache
            while cache and len(cache) >= self.cache_size:
                del cache[next(iter(cache))]
            cache[der] = identity
        if self.push is not None:
            # Each time: the request came here because the native cache did not have it.
            self.push(identity)
        return identity
