"""The ``edge.ip`` section of the native route table: a route's IP rules for the native core."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion import _native
from bastion.gateway.compile import compile_table, edge
from bastion.settings.config import Settings


def settings(**kw: Any) -> Settings:
    route = {"name": "office", "match": {"path": "/office"}, "upstream": "http://u", **kw}
    return Settings.model_validate({"routes": [{"public": True, **route}]})


def test_a_route_with_ip_rules_is_native() -> None:
    s = settings(ip={"allow": ["10.0.0.0/8", "2001:DB8::/32"], "deny": ["10.6.6.0/24"]})
    section = edge.section(s.routes[0], s)
    # As ipaddress prints the networks Python's IpRules compiles.
    assert section == {
        "max_body": int(s.request_limits.max_body),
        "cors": None,
        "ip": {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.6.6.0/24"]},
        "websocket": None,
    }
    table = compile_table(s)
    _native.routes_load(json.dumps(table))  # the native core reads the section


def test_only_deny_or_none() -> None:
    s = settings(ip={"deny": ["192.0.2.1"]})
    assert edge.section(s.routes[0], s)["ip"] == {"allow": [], "deny": ["192.0.2.1/32"]}
    plain = settings()
    assert edge.section(plain.routes[0], plain)["ip"] is None


def test_the_native_core_refuses_a_bad_network() -> None:
    s = settings(ip={"allow": ["10.0.0.0/8"]})
    table = compile_table(s)
    table["routes"][0]["edge"]["ip"]["allow"] = ["10.0.0.0/33"]
    with pytest.raises(ValueError, match=r"route office: ip: \"10.0.0.0/33\" has a bad prefix"):
        _native.routes_load(json.dumps(table))
