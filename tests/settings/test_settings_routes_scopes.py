"""Route ``scopes`` and ``api_key_header``: accepted forms and exact error lines."""

from __future__ import annotations

from collections.abc import Callable

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]

HEAD = "routes:\n  - {name: a, match: {path: /a%s}, upstream: 'http://x.internal', %s}\n"


def route(extra: str, match: str = "") -> str:
    return HEAD % (match, extra)


def test_defaults(load: Load) -> None:
    settings = load(route("auth: [api_key]"))
    assert settings.routes[0].scopes == []
    assert settings.routes[0].api_key_header is None


def test_one_list_for_every_method(load: Load) -> None:
    settings = load(route("auth: [api_key], scopes: [orders:read, 'orders:write']"))
    assert settings.routes[0].scopes == ["orders:read", "orders:write"]


def test_mapping_per_method_is_upper_cased(load: Load) -> None:
    text = route(
        "auth: [api_key, jwt], scopes: {get: [orders:read], POST: [orders:write], DELETE: []}",
        ", methods: [GET, POST, DELETE]",
    )
    assert load(text).routes[0].scopes == {
        "GET": ["orders:read"],
        "POST": ["orders:write"],
        "DELETE": [],
    }


def test_star_covers_the_rest_and_head_follows_get(load: Load) -> None:
    settings = load(route("auth: [jwt], scopes: {GET: [r], '*': [admin]}"))
    assert settings.routes[0].scopes == {"GET": ["r"], "*": ["admin"]}
    settings = load(route("auth: [jwt], scopes: {GET: [r]}", ", methods: [GET, HEAD]"))
    assert settings.routes[0].scopes == {"GET": ["r"]}


def test_empty_mapping_means_no_scopes(load: Load) -> None:
    assert load(route("auth: [jwt], scopes: {}")).routes[0].scopes == {}


def test_api_key_header(load: Load) -> None:
    settings = load(route("auth: [api_key], api_key_header: X-API-Key"))
    assert settings.routes[0].api_key_header == "X-API-Key"


def test_bad_scopes_name_each_entry(errors: Errors) -> None:
    text = route("auth: [jwt], scopes: {GET: [r, r, 'a b'], FETCH: [x], POST: read, '*': []}")
    assert errors(text) == [
        "routes[0].scopes.GET[1]: 'r' is listed twice — keep one",
        "routes[0].scopes.GET[2]: 'a b' is not a scope — one word of visible characters without "
        "spaces, '\"' or '\\', e.g. orders:read",
        "routes[0].scopes.FETCH: 'FETCH' is not a method — use GET, HEAD, POST, PUT, PATCH, "
        "DELETE, OPTIONS or '*' (every method not listed)",
        "routes[0].scopes.POST: 'read' is not a list of scopes — use e.g. [orders:read], or [] "
        "for none",
    ]


def test_scopes_must_be_a_list_or_mapping(errors: Errors) -> None:
    assert errors(route("auth: [jwt], scopes: orders:read")) == [
        "routes[0].scopes: 'orders:read' is not a list of scopes or a mapping of methods to "
        "scopes — use e.g. [orders:read] or {GET: [orders:read], POST: [orders:write]}"
    ]
    assert errors(route("auth: [jwt], scopes: [1, 'x\"y']")) == [
        "routes[0].scopes[0]: 1 is not a scope — one word of visible characters without "
        "spaces, '\"' or '\\', e.g. orders:read",
        "routes[0].scopes[1]: 'x\"y' is not a scope — one word of visible characters without "
        "spaces, '\"' or '\\', e.g. orders:read",
    ]


def test_a_mapping_must_cover_every_accepted_method(errors: Errors) -> None:
    assert errors(route("auth: [jwt], scopes: {GET: [r]}", ", methods: [GET, POST, DELETE]")) == [
        "routes[0].scopes: names no scopes for POST, DELETE, which the route accepts — list "
        "them (use [] for none), add '*' for every other method, or narrow match.methods"
    ]
    assert errors(route("auth: [jwt], scopes: {GET: [r], POST: [w]}")) == [
        "routes[0].scopes: names no scopes for PUT, PATCH, DELETE, OPTIONS, which the route "
        "accepts — list them (use [] for none), add '*' for every other method, or narrow "
        "match.methods"
    ]


def test_scopes_need_authentication(errors: Errors) -> None:
    assert errors(route("public: true, scopes: [r]")) == [
        "routes[0] (a): scopes need an authenticated caller — a public route has none; remove "
        "scopes or replace public: true with auth"
    ]


def test_bad_api_key_header(errors: Errors) -> None:
    assert errors(route("auth: [jwt], api_key_header: X-API-Key")) == [
        "routes[0] (a): api_key_header is only read by the api_key method — add api_key to "
        "auth or remove api_key_header"
    ]
    assert errors(route("auth: [api_key], api_key_header: 'X API'")) == [
        "routes[0].api_key_header: 'X API' is not a header name — use letters, digits and '-', "
        "e.g. X-API-Key"
    ]
    assert errors(route("auth: [api_key], api_key_header: authorization")) == [
        "routes[0].api_key_header: Authorization is always read (as 'Bearer bst_…') — remove "
        "api_key_header"
    ]
    for name in ("Cookie", "Host", "X-Forwarded-For", "Proxy-Authorization"):
        assert errors(route(f"auth: [api_key], api_key_header: {name}")) == [
            f"routes[0].api_key_header: '{name}' is a header the HTTP layer or the gateway "
            "controls — use a header of your own, e.g. X-API-Key"
        ]


def test_a_scope_outside_printable_ascii_is_a_config_error(errors: Errors) -> None:
    # The RFC 6750 challenge of a 403 insufficient_scope quotes the scopes in a header:
    # only RFC 6749 scope-tokens load (the native table refuses anything else too).
    assert errors(route('auth: [jwt], scopes: [\'orders:réad\', "a\\tb", "x\\x7fy"]')) == [
        f"routes[0].scopes[{i}]: {bad!r} is not a scope — one word of visible characters "
        "without spaces, '\"' or '\\', e.g. orders:read"
        for i, bad in enumerate(["orders:réad", "a\tb", "x\x7fy"])
    ]
