"""The request headers the gateway owns: never forwarded as the client sent them.

Shared by the identity headers' stripping (:mod:`bastion.gateway.mutate`: a
``Connection`` header cannot name these to make bastion drop its own) and the
native core's own lists of the same (``native/src/mutate.rs``).
"""

__all__ = ["HOP_BY_HOP_HEADERS", "PROXY_OWNED_REQUEST_HEADERS"]

# RFC 9110 §7.6.1 hop-by-hop headers; "proxy-*" is handled by prefix.
HOP_BY_HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Request headers bastion sets itself (or deliberately drops) instead of forwarding.
# Expect: the ASGI server already answered "100-continue" to the client.
# Forwarded / X-Real-IP: spoofable client-address claims; X-Forwarded-* replace them.
PROXY_OWNED_REQUEST_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",
        b"forwarded",
        b"x-real-ip",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
