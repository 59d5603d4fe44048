"""Typed settings in, the native route table out.

``compile_table(settings)`` turns the validated routes into one JSON document
that ``bastion._native`` loads as an immutable route table (``routes reload``
builds a new one and swaps it as one reference). Each route carries a section
per concern, each compiled by its own module:

- ``routes``: how a request matches the route (host, path, methods);
- ``edge``: the checks before authentication (body size; what keeps a route in Python);
- ``auth``: the authenticators and the authorize rules;
- ``limits``: the rate limits;
- ``upstream``: where and how the request is proxied, and what it carries there.

A section the native core cannot serve yet comes back as :class:`Unsupported`
with a reason; such a route stays matched natively but is served by the Python
pipeline (``"native": false``), and ``bastion routes list`` says why.
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.compile import auth, edge, limits, routes, upstream
from bastion.gateway.compile.common import Unsupported

__all__ = ["TABLE_VERSION", "Unsupported", "compile_table"]

#: Bumped whenever the JSON shape changes; the native loader refuses others.
TABLE_VERSION = 1


def compile_table(settings: Any) -> dict[str, Any]:
    """The native route table for ``settings.routes`` (a JSON-ready dict)."""
    compiled: list[dict[str, Any]] = []
    for index, route in enumerate(settings.routes):
        entry: dict[str, Any] = {"index": index, "name": route.name}
        sections = {
            "match": routes.section(route, settings),
            "edge": edge.section(route, settings),
            "auth": auth.section(route, settings),
            "limits": limits.section(route, settings),
            "upstream": upstream.section(route, settings),
        }
        reasons = [s.reason for s in sections.values() if isinstance(s, Unsupported)]
        entry["native"] = not reasons
        entry["defer_reason"] = "; ".join(reasons) if reasons else None
        for name, value in sections.items():
            entry[name] = None if isinstance(value, Unsupported) else value
        compiled.append(entry)
    return {"version": TABLE_VERSION, **edge.table_section(settings), "routes": compiled}
