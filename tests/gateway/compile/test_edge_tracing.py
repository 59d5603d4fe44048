"""The ``edge.tracing`` section of the native route table: tracing keeps routes native."""

from __future__ import annotations

import json

import pytest

from bastion import _native
from bastion.gateway.compile import compile_table, edge
from bastion.settings.config import Settings

ROUTE = {"name": "pub", "match": {"path": "/pub"}, "upstream": "http://u", "public": True}


def test_tracing_is_a_table_section_and_routes_stay_native() -> None:
    s = Settings.model_validate(
        {"routes": [ROUTE], "tracing": {"enabled": True, "sample_ratio": 0.25}}
    )
    assert edge.table_section(s)["tracing"] == {"sample_ratio": 0.25}
    table = compile_table(s)
    assert table["edge"]["tracing"] == {"sample_ratio": 0.25}
    _native.routes_load(json.dumps(table))  # the native core reads the section


def test_tracing_off_is_null() -> None:
    s = Settings.model_validate({"routes": [ROUTE]})
    assert compile_table(s)["edge"]["tracing"] is None


def test_the_native_core_refuses_a_ratio_out_of_range() -> None:
    from bastion.gateway.compile import load_table

    s = Settings.model_validate({"routes": [ROUTE]})
    table = compile_table(s)
    table["edge"]["tracing"] = {"sample_ratio": 1.5}
    with pytest.raises(ValueError, match="sample_ratio"):
        _native.routes_load(json.dumps(table))
    assert load_table(s)["edge"]["tracing"] is None  # a valid table loads again
