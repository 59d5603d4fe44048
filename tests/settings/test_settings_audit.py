"""The ``audit:`` section: defaults, durations, ``none`` retention and bad values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


def test_defaults(load: Load) -> None:
    audit = load().audit
    assert audit.retention == 365 * 86400
    assert audit.file is None
    assert (audit.batch_size, audit.flush_interval, audit.max_queue) == (500, 1.0, 100_000)
    assert audit.checkpoint_interval == 300


def test_values(load: Load, tmp_path: Path) -> None:
    audit = load(
        f"audit: {{retention: 30d, file: {tmp_path}/audit.jsonl, batch_size: 50, "
        "flush_interval: 250ms, max_queue: 5000, checkpoint_interval: 1m}\n"
    ).audit
    assert audit.retention == 30 * 86400
    assert audit.file == tmp_path / "audit.jsonl"
    assert (audit.batch_size, audit.flush_interval, audit.max_queue) == (50, 0.25, 5000)
    assert audit.checkpoint_interval == 60


@pytest.mark.parametrize("value", ["none", "forever", "null", "None"])
def test_retention_none_keeps_everything(load: Load, value: str) -> None:
    assert load(f"audit: {{retention: {value}}}\n").audit.retention is None


def test_environment(load: Load) -> None:
    audit = load(None, {"BASTION_AUDIT__RETENTION": "90d", "BASTION_AUDIT__BATCH_SIZE": "10"}).audit
    assert (audit.retention, audit.batch_size) == (90 * 86400, 10)


def test_bad_values(errors: Errors) -> None:
    assert errors(
        "audit: {retention: 10m, batch_size: 0, flush_interval: 2m, max_queue: 10, "
        "checkpoint_interval: 1s}\n"
    ) == [
        "audit.retention: '10m' is shorter than a day — use e.g. 90d or 365d, or none to keep "
        "every record",
        "audit.batch_size: 0 is too small — use a number of at least 1",
        "audit.flush_interval: '2m' is too large — use a number of at most 60",
        "audit.max_queue: 10 is too small — use a number of at least 1000",
        "audit.checkpoint_interval: '1s' is too small — use a number of at least 10",
    ]
    assert errors("audit: {retention: soon, batch_size: yes, files: x}\n") == [
        "audit.retention: 'soon' is not a duration — use seconds or e.g. 30s, 15m, 12h, 90d",
        "audit.batch_size: true is not a number",
        "audit.files: unknown key — did you mean 'file'?",
    ]


def test_durations_are_bounded_to_100_years(errors: Errors, load: Load) -> None:
    # Unbounded, these crashed pruning (`now - timedelta(...)` overflows) at run time.
    assert errors("audit: {retention: 99999999999d}\n") == [
        "audit.retention: '99999999999d' is too long — at most 100 years (36500d)"
    ]
    assert errors("audit: {retention: 1.0e+300}\n") == [
        "audit.retention: 1e+300 is too long — at most 100 years (36500d)"
    ]
    assert errors("audit: {retention: .inf}\n") == [
        "audit.retention: inf is not a duration — give a number of seconds >= 0"
    ]
    assert load("audit: {retention: 36500d}\n").audit.retention == 36500 * 86400
