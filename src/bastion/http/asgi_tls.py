"""The ASGI TLS extension for uvicorn: the verified client certificate in the request scope.

uvicorn's httptools protocol does not fill ``scope["extensions"]["tls"]``
(https://asgi.readthedocs.io/en/latest/specs/tls.html); this subclass does,
once per connection, from the SSL object of the transport:
``client_cert_chain`` (the verified leaf as PEM — Python's ``ssl`` exposes
only the leaf before 3.13), ``tls_version`` and ``cipher_suite`` per the spec
(``None`` where unknown). Without a client certificate the chain is empty.
granian exposes no peer certificate at all (checked up to 2.8.9), so client
certificate authentication needs ``server.engine: uvicorn``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["TlsExtensionProtocol"]

_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TlsExtensionProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI ``tls`` extension in every scope."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            self._tls = None
            return
        der = ssl_object.getpeercert(binary_form=True)
        self._tls = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": _VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None,
        }

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            scope: Any = self.scope
            scope["extensions"] = {"tls": self._tls}
