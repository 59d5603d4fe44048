"""bastion's own issuer URL is ``self``: never a trusted issuer, never named by its URL."""

from __future__ import annotations

from collections.abc import Callable

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]

OWN = "https://auth.test"


def config(issuers: str, route_issuers: str) -> str:
    return (
        f"issuer: {OWN}\n"
        f"trusted_issuers:\n{issuers}"
        "routes:\n  - {name: a, match: {path: /a}, upstream: 'http://x.internal', "
        f"auth: [jwt], jwt: {{issuers: {route_issuers}}}}}\n"
    )


def test_a_trusted_issuer_naming_bastion_itself_is_refused(errors: Errors) -> None:
    text = config(
        f"  - {{issuer: '{OWN}', audiences: [api]}}\n"
        "  - {issuer: 'https://idp.test', audiences: [api]}\n",
        f"[self, '{OWN}', 'https://idp.test']",
    )
    assert errors(text) == [
        "trusted_issuers[0].issuer: is bastion's own issuer_url — remove this entry and name "
        "self in a route's jwt.issuers to accept bastion's own tokens",
        f"routes[0].jwt.issuers[1]: '{OWN}' is bastion's own issuer_url — name self for "
        "bastion's own tokens",
    ]


def test_a_route_naming_bastion_s_url_without_a_trusted_entry_is_told_to_name_self(
    errors: Errors,
) -> None:
    text = config("  - {issuer: 'https://idp.test', audiences: [api]}\n", f"['{OWN}']")
    assert errors(text) == [
        f"routes[0].jwt.issuers[0]: '{OWN}' is bastion's own issuer_url — name self for "
        "bastion's own tokens",
    ]


def test_self_and_distinct_issuers_load(load: Load) -> None:
    settings = load(
        config("  - {issuer: 'https://idp.test', audiences: [api]}\n", "[self, 'https://idp.test']")
    )
    assert settings.issuer_url == OWN
    assert settings.routes[0].jwt is not None
    assert settings.routes[0].jwt.issuers == ["self", "https://idp.test"]
