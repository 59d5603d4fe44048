"""The client's address as the gateway believes it (for IP allow-lists).

The direct peer is the client unless it is a configured trusted proxy; then
``X-Forwarded-For`` is read from the right, skipping trusted proxies, and the
first address that is not one is the client (what every hop we trust says it
received the request from). Anything left of that is the client's own claim
and ignored. A hop that is not an IP address is returned as-is, so an
allow-list check refuses it instead of mistaking the proxy for the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bastion.gateway.proxy import TrustedProxies

__all__ = ["client_ip"]


def client_ip(scope: Mapping[str, Any], trusted: TrustedProxies) -> str | None:
    """The client address of the ASGI ``scope``; ``None`` when the server gave no peer."""
    client = scope.get("client")
    peer: str | None = client[0] if client else None
    if peer is None or not trusted or peer not in trusted:
        return peer
    hops: list[str] = []
    for name, value in scope.get("headers") or ():
        if name.lower() == b"x-forwarded-for":
            hops.extend(part.strip() for part in value.decode("latin-1").split(","))
    hops = [hop for hop in hops if hop]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer
