"""return_to: same-origin relative paths only, whatever the spelling of an escape."""

from __future__ import annotations

import pytest

from bastion.interaction import UnsafeReturnToError, check_return_to

SAFE = [
    "/account",
    "/",
    "/app/orders?id=7&view=full#top",
    "/a/b%20c",
    "/search?q=%2Fslash",  # an encoded slash in the query is data, not a host
    "/x:y@z",
]

ATTACKS = [
    "",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "evil.example",
    "account",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%255Cevil.example",  # double encoded backslash
    "/%25252F%25252Fevil",  # encoded past three decodings
    "/\tevil",
    "/\n/evil.example",
    "/%09/evil.example",
    "/%0d%0aSet-Cookie:x=1",
    "/\x00evil",
    "/\x7f",
    "/ space",
    "/caf\u00e9",
    "/../evil",
    "/a/./b",
    "/a/%2e%2e/b",
    "/%2e%2e//evil.example",
    "/" + "a" * 2048,
]


@pytest.mark.parametrize("value", SAFE)
def test_safe_paths_come_back_unchanged(value: str) -> None:
    assert check_return_to(value) == value


@pytest.mark.parametrize("value", ATTACKS)
def test_every_escape_is_refused(value: str) -> None:
    with pytest.raises(UnsafeReturnToError) as info:
        check_return_to(value)
    assert (info.value.status, info.value.code) == (400, "invalid_return_to")
