"""CSRF tokens: bound to the browser's cookie and to the master key."""

from __future__ import annotations

import pytest

from bastion.crypto import Keyring, MasterKey
from bastion.interaction import CsrfError, CsrfTokens


def test_a_token_verifies_only_with_its_cookie() -> None:
    tokens = CsrfTokens.from_keyring(Keyring([MasterKey.generate()]))
    cookie = tokens.new_cookie()
    tokens.verify(cookie, tokens.token_for(cookie))
    other = tokens.new_cookie()
    with pytest.raises(CsrfError) as info:
        tokens.verify(other, tokens.token_for(cookie))
    assert (info.value.status, info.value.code) == (403, "csrf_failed")


@pytest.mark.parametrize(("cookie", "token"), [(None, "x"), ("c", None), ("", ""), ("c", "c")])
def test_missing_or_forged_tokens_are_refused(cookie: str | None, token: str | None) -> None:
    with pytest.raises(CsrfError):
        CsrfTokens(b"k" * 32).verify(cookie, token)


def test_another_key_makes_other_tokens() -> None:
    cookie = "same-cookie"
    one = CsrfTokens.from_keyring(Keyring([MasterKey.generate()]))
    two = CsrfTokens.from_keyring(Keyring([MasterKey.generate()]))
    with pytest.raises(CsrfError):
        two.verify(cookie, one.token_for(cookie))
