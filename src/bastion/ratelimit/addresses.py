"""The canonical form of a client address as a rate-limit bucket key (its one home).

Counting by the raw address string lets one client look like many: the same
IPv6 address has many spellings (``2001:DB8::1`` / ``2001:db8:0::1``), an
IPv4 client reaching a dual-stack listener arrives as ``::ffff:192.0.2.1``,
and an IPv6 client is routinely given a whole /64 (and picks a new address in
it at will, RFC 8981). So every per-IP limit and every per-IP throttle counts
by :func:`ip_bucket`: IPv4 addresses as themselves, IPv4-mapped IPv6 as the
IPv4 address, and other IPv6 addresses by their /64 network.
"""

from __future__ import annotations

import ipaddress
from typing import Final

__all__ = ["IPV6_BUCKET_PREFIX", "ip_bucket"]

#: The prefix length IPv6 clients are counted by.
IPV6_BUCKET_PREFIX: Final = 64

_MAX_LENGTH: Final = 64
_MASK: Final = ((1 << IPV6_BUCKET_PREFIX) - 1) << (128 - IPV6_BUCKET_PREFIX)


def ip_bucket(address: str) -> str:
    """The bucket key of the client ``address`` (as gateway.authn.client_ip resolves it).

    ``"192.0.2.1"`` and ``"::ffff:192.0.2.1"`` → ``"192.0.2.1"``;
    ``"2001:DB8::1"`` → ``"2001:db8::/64"``. A value that is not an IP address
    (a proxy's hop such as ``unknown``) is kept as written, cut to 64
    characters, so it still counts as one client. Never raises.
    """
    try:
        parsed = ipaddress.ip_address(address.strip())
    except ValueError:
        return address[:_MAX_LENGTH]
    if isinstance(parsed, ipaddress.IPv4Address):
        return str(parsed)
    mapped = parsed.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    # int() drops a zone id (fe80::1%eth0): the interface does not make another client.
    network = ipaddress.IPv6Address(int(parsed) & _MASK)
    return f"{network}/{IPV6_BUCKET_PREFIX}"
