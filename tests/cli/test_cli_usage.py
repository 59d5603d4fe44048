"""What a new operator meets first: usage errors, help texts and bounded option values.

Usage errors are one ``error: …`` line naming the flag (never a box, never a
configuration key), and ``--json`` turns them into the usual error document;
durations beyond 100 years are one-line errors instead of tracebacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from _support import run_cli


def invoke(*args: str) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_usage_error_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    result = run_cli("serve", "--port", "70000", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: Invalid value for '--port': Input should be less than or equal to 65535 "
        "(see `bastion serve --help`)"
    ]


def test_a_bad_host_names_the_flag_not_the_variable(in_process: Path) -> None:
    result = invoke("serve", "--host", "bad host!")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --host: 'bad host!' is not a host name or IP address — use e.g. 0.0.0.0 or "
        "127.0.0.1"
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["keys", "show"],
            "error: Missing argument 'KEY'. (see `bastion keys show --help`)",
        ),
        (
            ["keys", "list", "--jsn"],
            "error: No such option: --jsn (Possible options: --json) "
            "(see `bastion keys list --help`)",
        ),
        (
            ["audit", "search", "--limit", "0"],
            "error: Invalid value for '--limit': Input should be greater than or equal to 1 "
            "(see `bastion audit search --help`)",
        ),
    ],
)
def test_usage_errors_in_process(in_process: Path, args: list[str], line: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [line]
    assert "╭" not in result.output and "Usage:" not in result.output


def test_usage_error_with_json_is_the_error_document(in_process: Path) -> None:
    result = invoke("keys", "list", "--limit", "abc", "--json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": "invalid_arguments",
        "detail": "Invalid value for '--limit': Input should be a valid integer, unable to "
        "parse string as an integer",
    }


def test_no_arguments_still_shows_the_help(in_process: Path) -> None:
    result = invoke("keys")
    assert result.exit_code == 2
    assert "Usage: bastion keys" in result.stdout and "error" not in result.output


@pytest.mark.parametrize("command", [["keys", "create"], ["audit", "verify"], ["serve"]])
def test_flags_are_shown_as_flags(in_process: Path, command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "<bool>" not in result.stdout
    assert "--json" in result.stdout and "--help" in result.stdout
    if command == ["keys", "create"]:
        assert "<str>" in result.stdout  # options taking a value still show its type


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        (
            ["keys", "create", "x", "--expires", "99999999d"],
            "--expires '99999999d': too long — at most 100 years (36500d)",
        ),
        (
            ["keys", "update", "x", "--expires", "9999-12-31T23:59:59-12:00"],
            "--expires '9999-12-31T23:59:59-12:00': out of range — give a date/time between "
            "the years 1 and 9999",
        ),
        (
            ["keys", "rotate", "x", "--grace", "99999999999999999999d"],
            "--grace '99999999999999999999d': too long — at most 100 years (36500d)",
        ),
        (
            ["clients", "rotate-secret", "x", "--grace", "soon"],
            "--grace 'soon': not a duration — use seconds or e.g. 30s, 15m, 12h, 90d",
        ),
        (
            ["audit", "search", "--since", "99999999999d"],
            "--since '99999999999d': too long — at most 100 years (36500d)",
        ),
        (
            ["audit", "search", "--until", "36501d"],
            "--until '36501d': too long — at most 100 years (36500d)",
        ),
        (
            ["audit", "prune", "--before", "99999999999d"],
            "--before '99999999999d': too long — at most 100 years (36500d)",
        ),
    ],
)
def test_durations_are_bounded(in_process: Path, args: list[str], detail: str) -> None:
    result = invoke(*args, "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {"error": "invalid_arguments", "detail": detail}


def test_bounded_duration_in_text_mode_is_one_line(in_process: Path) -> None:
    result = invoke("audit", "search", "--since", "99999999999d")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: --since '99999999999d': too long — at most 100 years (36500d)"
    ]


def test_longest_duration_is_accepted(in_process: Path) -> None:
    result = invoke("audit", "search", "--since", "36500d", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["items"] == []
