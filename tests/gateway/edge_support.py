"""Route stand-ins with the edge settings (cors, ip, max_body) for the gateway edge tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.settings.models import CorsSettings, IpAccessSettings
from gateway.gateway_support import Match, Route


@dataclass(frozen=True)
class EdgeRoute(Route):
    cors: CorsSettings | None = None
    ip: IpAccessSettings | None = None
    max_body: int | None = None
    api_key_header: str | None = None
    scopes: Any = None


def edge_route(name: str, path: str, upstream: str = "http://127.0.0.1:9", **kw: Any) -> EdgeRoute:
    match_kw = {k: kw.pop(k) for k in ("host", "methods") if k in kw}
    if isinstance(kw.get("cors"), dict):
        kw["cors"] = CorsSettings(**kw["cors"])
    if isinstance(kw.get("ip"), dict):
        kw["ip"] = IpAccessSettings(**kw["ip"])
    return EdgeRoute(name=name, match=Match(path=path, **match_kw), upstream=upstream, **kw)
