"""Route ``limits``: accepted forms and exact error lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from bastion.ratelimit import Limit
from bastion.settings import Settings
from bastion.settings.routes import RouteSettings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]

HEAD = (
    "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', auth: [api_key]%s}\n"
)


def route(extra: str) -> str:
    return HEAD % extra


def test_no_limits_by_default(load: Load) -> None:
    assert load(route("")).routes[0].limits == []


def test_limits_parse_with_defaults(load: Load) -> None:
    text = route(
        ", limits: [{per: key, rate: 100/minute}, {per: ip, rate: 5/second, burst: 10, fail: open}]"
    )
    first, second = load(text).routes[0].limits
    assert (first.per, first.rate, first.burst, first.fail) == ("key", "100/minute", None, "closed")
    assert first.limit() == Limit(100, 60.0)
    assert (second.per, second.burst, second.fail) == ("ip", 10, "open")
    assert second.limit() == Limit(5, 1.0, 10)


def test_bad_rate_names_the_key(errors: Errors) -> None:
    assert errors(route(", limits: [{per: key, rate: 100/fortnight}]")) == [
        "routes[0].limits[0].rate: invalid rate limit '100/fortnight': unknown unit 'fortnight' "
        "(use second, minute, hour or day)"
    ]
    assert errors(route(", limits: [{per: key, rate: lots}]")) == [
        "routes[0].limits[0].rate: invalid rate limit 'lots': expected '<count>/<unit>' "
        "such as '100/minute' (units: second, minute, hour, day)"
    ]


def test_bad_per_burst_and_fail_are_refused(errors: Errors) -> None:
    lines = errors(route(", limits: [{per: user, rate: 1/second, burst: 0, fail: maybe}]"))
    assert [line.split(":")[0] for line in lines] == [
        "routes[0].limits[0].per",
        "routes[0].limits[0].burst",
        "routes[0].limits[0].fail",
    ]


def test_example_file_has_limits_on_orders() -> None:
    path = Path(__file__).parents[2] / "bastion.example.yaml"
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    entry = next(r for r in tree["routes"] if r["name"] == "orders")
    orders = RouteSettings.model_validate(entry)
    assert [(lim.per, lim.rate, lim.burst, lim.fail) for lim in orders.limits] == [
        ("key", "100/minute", None, "closed"),
        ("ip", "20/second", 40, "open"),
    ]
