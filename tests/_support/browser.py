"""Debian's chromium for the browser tests (Playwright; TESTING-NOTES): where it is, how it is
launched, where screenshots go, and the skip-or-fail rule when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots: ``test-artifacts/`` at the repository root, or ``$BASTION_TEST_ARTIFACTS``.
ARTIFACTS = Path(
    os.environ.get("BASTION_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)


def require_chromium() -> None:
    """Skip outside CI when chromium is missing; under ``CI=true`` that is a failure."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
