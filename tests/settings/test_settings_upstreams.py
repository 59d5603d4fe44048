"""Route upstream targets, timeouts, health, upstream TLS and websocket keys: forms and errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]

HEAD = "routes:\n  - {name: a, match: {path: /a}, public: true, %s}\n"


def route(extra: str) -> str:
    return HEAD % extra


def test_upstream_string_or_list(load: Load) -> None:
    one = load(route("upstream: 'http://x.internal/'")).routes[0]
    assert one.upstream == "http://x.internal" and one.upstreams == ["http://x.internal"]
    many = load(route("upstream: ['http://x.internal:1', 'https://y.internal/']")).routes[0]
    assert many.upstreams == ["http://x.internal:1", "https://y.internal"]
    assert (many.connect_timeout, many.read_timeout) == (5.0, 30.0)
    assert (many.health.failures, many.health.cooldown, many.health.max_cooldown) == (3, 5.0, 300.0)
    assert many.websocket.enabled is False


def test_bad_upstream_lists(errors: Errors) -> None:
    assert errors(route("upstream: []")) == [
        "routes[0].upstream: is an empty list — give one URL or a list of URLs, e.g. "
        "[http://orders-1.internal:9000, http://orders-2.internal:9000]"
    ]
    assert errors(route("upstream: ['http://x.internal', 'ftp://y', 'http://x.internal/']")) == [
        "routes[0].upstream[1]: 'ftp://y' is not an absolute http(s) URL — use e.g. "
        "http://orders-1.internal:9000",
        "routes[0].upstream[2]: 'http://x.internal/' is listed twice — keep one",
    ]


def test_bad_health_and_timeouts(errors: Errors) -> None:
    text = route(
        "upstream: 'http://x.internal', connect_timeout: 0, "
        "health: {failures: 0, cooldown: 10, max_cooldown: 5}"
    )
    assert errors(text) == [
        "routes[0].connect_timeout: 0 is too small — use a number greater than 0",
        "routes[0].health.failures: 0 is too small — use a number of at least 1",
    ]
    assert errors(
        route("upstream: 'http://x.internal', health: {cooldown: 10, max_cooldown: 5}")
    ) == [
        "routes[0].health.max_cooldown: 5.0 is shorter than cooldown (10.0) — make max_cooldown "
        "at least cooldown"
    ]


def test_upstream_tls_keys(errors: Errors, load: Load, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert errors(route(f"upstream: 'http://x.internal', upstream_ca: {ca}")) == [
        "routes[0] (a): upstream_ca is only used for https upstreams — use an https:// "
        "upstream URL or remove upstream_ca"
    ]
    assert errors(route(f"upstream: 'https://x.internal', upstream_client_cert: {ca}")) == [
        "routes[0] (a): upstream_client_cert and upstream_client_key go together — set both (a "
        "client certificate for upstream mTLS and its private key) or neither"
    ]
    missing = tmp_path / "nope.pem"
    assert errors(route(f"upstream: 'https://x.internal', upstream_ca: {missing}")) == [
        f"routes[0].upstream_ca: file {missing} does not exist — check the path"
    ]
    assert (
        load(route(f"upstream: 'https://x.internal', upstream_ca: {ca}")).routes[0].upstream_ca
        == ca
    )


def test_websocket_shorthand_and_errors(load: Load, errors: Errors) -> None:
    ws = load(route("upstream: 'http://x.internal', websocket: true")).routes[0].websocket
    assert ws.enabled is True and ws.idle_timeout == 300.0
    assert errors(route("upstream: 'http://x.internal', websocket: {enabled: true, idle: 3}")) == [
        "routes[0].websocket.idle: unknown key — remove it (keys here: enabled, idle_timeout, "
        "max_duration, max_message_size)"
    ]


def test_tls_reload_interval(load: Load, errors: Errors) -> None:
    assert load("tls: {reload_interval: 0}\n").tls.reload_interval == 0
    assert errors("tls: {reload_interval: -1}\n") == [
        "tls.reload_interval: -1 is too small — use a number of at least 0"
    ]
