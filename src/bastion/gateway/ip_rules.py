"""A route's client-address allow and deny networks (compiled for the native table) and
the admin API's allow-list.

The client address is the one :func:`~bastion.gateway.forwarded.client_ip`
derives (``X-Forwarded-For`` believed only from ``trusted_proxies``). ``deny``
wins over ``allow``; an empty ``allow`` allows every address not denied. An
address that cannot be parsed (or no address at all) is refused whenever the
route has rules: fail closed. IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``,
what dual-stack sockets report) are judged as the IPv4 address they carry.

Runs before authentication: it is cheap, and a refused address learns nothing
about credentials (no credential oracle for blocked networks).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bastion.gateway.errors import GatewayError
from bastion.gateway.matcher import CompiledRoute

__all__ = ["IpNotAllowedError", "IpRules", "compile_ip_rules"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class IpNotAllowedError(GatewayError):
    """The client address is denied, or not in the allow-list, of the route (403)."""

    code = "ip_not_allowed"
    status = 403
    title = "Forbidden"


def _networks(entries: Iterable[object]) -> tuple[Network, ...]:
    return tuple(
        e
        if isinstance(e, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else ipaddress.ip_network(str(e).strip(), strict=False)
        for e in entries
    )


@dataclass(frozen=True, slots=True)
class IpRules:
    """Compiled allow / deny networks of one route."""

    allow: tuple[Network, ...]
    deny: tuple[Network, ...]

    @classmethod
    def of(cls, allow: Iterable[object] = (), deny: Iterable[object] = ()) -> IpRules:
        """Rules from networks or their text; raises ValueError for an invalid entry."""
        return cls(_networks(allow), _networks(deny))

    def check(self, address: str | None) -> None:
        """Return if ``address`` may call the route; raise :class:`IpNotAllowedError` if not."""
        parsed: Address | None = None
        if address is not None:
            try:
                parsed = ipaddress.ip_address(address.strip("[]"))
            except ValueError:
                parsed = None
        if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
            parsed = parsed.ipv4_mapped
        if parsed is None:
            raise IpNotAllowedError("The client address cannot be determined.")
        if any(_contains(n, parsed) for n in self.deny):
            raise IpNotAllowedError("Requests from this address are not allowed on this route.")
        if self.allow and not any(_contains(n, parsed) for n in self.allow):
            raise IpNotAllowedError("Requests from this address are not allowed on this route.")


def _contains(network: Network, address: Address) -> bool:
    return network.version == address.version and address in network


def compile_ip_rules(route: CompiledRoute) -> IpRules | None:
    """The rules of ``route``'s ``ip`` setting, or ``None`` when it has none."""
    settings = route.settings.ip
    if settings is None:
        return None
    return IpRules.of(settings.allow, settings.deny)
