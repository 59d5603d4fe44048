"""Typed settings in, the native route table out.

``compile_table(settings)`` turns the validated routes into one JSON document
that ``bastion._native`` loads as an immutable route table (``routes reload``
builds a new one and swaps it as one reference). Each route carries a section
per concern, each compiled by its own module:

- ``routes``: how a request matches the route (host, path, methods);
- ``edge``: the checks before authentication (body size, the CORS policy, IP rules,
  WebSocket limits);
- ``routes``: how a request matches the route (host, path, methods), plus the
  table-wide ``match`` inputs of the router (the control plane's reserved
  prefixes, whether CORS preflights exist);
- ``auth``: the authenticators and the authorize rules;
- ``limits``: the rate limits;
- ``upstream``: where and how the request is proxied, and what it carries there;
- ``forward_auth`` (table-wide): the header family ``/auth/verify`` reads.

Every route is native: a section raises (the settings validation catches its
errors first) rather than leave a route to the control plane, which serves no
gateway request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bastion import _native
from bastion.gateway.compile import auth, edge, forward_auth, limits, routes, upstream
from bastion.settings import RouteSettings, Settings

__all__ = ["TABLE_VERSION", "compile_table", "load_table"]

#: Bumped whenever the JSON shape changes; the native loader refuses others.
TABLE_VERSION = 1


def compile_table(
    settings: Settings, route_list: Sequence[RouteSettings] | None = None
) -> dict[str, Any]:
    """The native route table for ``route_list`` (default ``settings.routes``), JSON-ready."""
    compiled: list[dict[str, Any]] = []
    for index, route in enumerate(settings.routes if route_list is None else route_list):
        entry: dict[str, Any] = {
            "index": index,
            "name": route.name,
            "match": routes.section(route, settings),
            "edge": edge.section(route, settings),
            "auth": auth.section(route, settings),
            "limits": limits.section(route, settings),
            "upstream": upstream.section(route, settings),
        }
        compiled.append(entry)
    return {
        "version": TABLE_VERSION,
        "match": routes.table_section(settings),
        "edge": edge.table_section(settings),
        "forward_auth": forward_auth.table_section(settings),
        "routes": compiled,
    }


def load_table(
    settings: Settings, route_list: Sequence[RouteSettings] | None = None
) -> dict[str, Any]:
    """Compile the routes and put the table in force in the native data plane; return it.

    Requests in flight finish on the previous table. Raises
    :class:`~bastion.gateway.errors.GatewayConfigError` when the native core
    refuses the table (a section it cannot read: a bug between this compiler
    and the crate), leaving the previous table in force.
    """
    from bastion.gateway.errors import GatewayConfigError

    table = compile_table(settings, route_list)
    try:
        _native.routes_load(json.dumps(table))
    except ValueError as exc:
        raise GatewayConfigError(f"the native route table was refused: {exc}") from None
    return table
