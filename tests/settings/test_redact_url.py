"""redact_url hides passwords in URLs and leaves everything else alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.settings import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://bastion:hunter2@db:5432/bastion",
            "postgresql://bastion:***@db:5432/bastion",
        ),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://user:p@ss@cache/0", "rediss://user:***@cache/0"),
        ("postgresql://bastion@db/bastion", "postgresql://bastion@db/bastion"),
        (
            "postgresql://db/bastion?password=hunter2&sslmode=require",
            "postgresql://db/bastion?password=***&sslmode=require",
        ),
        ("sqlite:////var/lib/bastion/bastion.db", "sqlite:////var/lib/bastion/bastion.db"),
        ("memory://", "memory://"),
        ("not a url", "not a url"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


password = st.text(
    alphabet=st.characters(blacklist_characters="/?#", blacklist_categories=("Cs",)), min_size=4
)


@given(password=password)
def test_password_never_survives(password: str) -> None:
    url = f"postgresql://bastion:{password}@db.internal:5432/bastion"
    assert redact_url(url) == "postgresql://bastion:***@db.internal:5432/bastion"
