"""Who the client is: the trusted proxies and the client address they vouch for.

The direct peer is the client unless it is a configured trusted proxy
(``trusted_proxies``); then ``X-Forwarded-For`` is read from the right,
skipping trusted proxies, and the first address that is not one is the client
(what every hop we trust says it received the request from). Anything left of
that is the client's own claim and ignored. A hop that is not an IP address is
returned as-is, so an allow-list check refuses it instead of mistaking the
proxy for the client.

The control plane resolves it once per request: bastion's ASGI app
(:class:`bastion.http.app.BastionApp`) calls :func:`remember_client_ip` as a
request enters, and every endpoint that needs the address (the token endpoint
and its audit events, the admin IP allow-list and recording, leak reports)
reads it back with :func:`request_client_ip`. The native core does the same
for gateway routes (``trusted`` in its table).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Final

__all__ = [
    "CLIENT_IP_SCOPE_KEY",
    "ProxyEntry",
    "TrustedProxies",
    "client_ip",
    "remember_client_ip",
    "request_client_ip",
]

#: The ASGI scope key holding the client address resolved for the request.
CLIENT_IP_SCOPE_KEY: Final = "bastion.client_ip"

ProxyEntry = (
    str
    | ipaddress.IPv4Network
    | ipaddress.IPv6Network
    | ipaddress.IPv4Address
    | ipaddress.IPv6Address
)


class TrustedProxies:
    """The set of direct peers whose ``X-Forwarded-*`` headers are believed.

    Built from IP addresses and CIDR networks, as text or ``ipaddress``
    objects (``Settings.trusted_proxies``); raises ``ValueError`` for an entry
    that is neither.
    """

    def __init__(self, entries: Iterable[ProxyEntry] = ()) -> None:
        self._networks = tuple(
            ipaddress.ip_network(e.strip() if isinstance(e, str) else e, strict=False)
            for e in entries
        )
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, peer: object) -> bool:
        if not self._networks or not isinstance(peer, str):
            return False
        known = self._cache.get(peer)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            result = False
        else:
            result = any(address in network for network in self._networks)
        if len(self._cache) < 4096:  # bounded: peers are attacker-chosen
            self._cache[peer] = result
        return result


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


def remember_client_ip(scope: MutableMapping[str, Any], trusted: TrustedProxies) -> None:
    """Resolve the client address of ``scope`` (:func:`client_ip`) once, into the scope.

    Called by the app as a request enters; a scope that holds it already keeps it.
    """
    if CLIENT_IP_SCOPE_KEY not in scope:
        scope[CLIENT_IP_SCOPE_KEY] = client_ip(scope, trusted)


def request_client_ip(scope: Mapping[str, Any]) -> str | None:
    """The client address resolved for this request by :func:`remember_client_ip`.

    Raises ``LookupError`` for a scope that did not enter through bastion's app:
    guessing the address there (the peer? which proxies?) would be the second
    home this rule must not have.
    """
    try:
        address: str | None = scope[CLIENT_IP_SCOPE_KEY]
    except KeyError:
        raise LookupError(
            "the client address of this request was not resolved (bastion.http.app does it)"
        ) from None
    return address
