"""The dependency audit: offline advisory files, and pip-audit's report read correctly.

pip-audit itself is replaced by a tiny script printing a canned report, so the
tests never depend on the network (which is unreachable on the CI machines).
"""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from bastion.doctor import AdvisoryFileError, audit_dependencies, load_advisories
from bastion.doctor.dependencies import installed_distributions

INSTALLED = [("pyyaml", "6.0.1"), ("requests", "2.31.0"), ("tiny", "1.0")]


def advisory_file(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "advisories.json"
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def fake_pip_audit(tmp_path: Path, stdout: str, stderr: str = "", status: int = 0) -> list[str]:
    script = tmp_path / "fake_pip_audit.py"
    script.write_text(
        "import sys\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({status})\n"
    )
    return [sys.executable, str(script)]


def test_installed_distributions_are_this_environment() -> None:
    installed = dict(installed_distributions())
    assert installed["pyyaml"] == metadata.version("PyYAML")
    assert "bastion" not in installed


def test_offline_advisories_match_by_specifier(tmp_path: Path) -> None:
    path = advisory_file(
        tmp_path,
        {
            "advisories": [
                {"package": "PyYAML", "id": "ADV-1", "affected": "<6.0.2", "fixed_in": ["6.0.2"]},
                {"package": "requests", "id": "ADV-2", "affected": "<2.0"},
                {"package": "tiny", "id": "ADV-3", "affected": "==1.0"},
            ]
        },
    )
    [finding] = audit_dependencies(advisories=load_advisories(path), installed=INSTALLED)
    assert (finding.id, finding.severity) == ("dependency.vulnerable", "high")
    assert finding.subjects == ("pyyaml==6.0.1: ADV-1 (fixed in 6.0.2)", "tiny==1.0: ADV-3")
    assert finding.detail == "2 known vulnerabilities in pyyaml==6.0.1, tiny==1.0"


def test_offline_without_matches_is_clean(tmp_path: Path) -> None:
    path = advisory_file(tmp_path, {"advisories": [{"package": "x", "id": "A", "affected": "<1"}]})
    assert audit_dependencies(advisories=load_advisories(path), installed=INSTALLED) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "not json",
            "advisories.json is not JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        (
            {"advisories": [{"id": "A", "affected": "<1"}]},
            "is not an advisory list (advisories.0.package: Field required) — use "
            '{"advisories": [{"package": …, "id": …, "affected": "<2.0"}]}',
        ),
        ([1], "is not an advisory list (file: Input should be a valid dictionary"),
        (
            {"advisories": [{"package": "x", "id": "A", "affected": "soon"}]},
            "advisories.0.affected 'soon' is not a version specifier — use e.g. '<2.0' or "
            "'>=1.0,<1.4.2'",
        ),
    ],
)
def test_bad_advisory_files(tmp_path: Path, content: Any, message: str) -> None:
    path = advisory_file(tmp_path, content)
    with pytest.raises(AdvisoryFileError) as caught:
        load_advisories(path)
    assert message in caught.value.detail
    assert caught.value.code == "invalid_advisory_file"


def test_missing_advisory_file(tmp_path: Path) -> None:
    with pytest.raises(AdvisoryFileError) as caught:
        load_advisories(tmp_path / "nope.json")
    assert caught.value.detail == (
        f"cannot read advisory file {tmp_path / 'nope.json'}: No such file or directory — "
        "check the path"
    )


def test_unreachable_service_is_one_info_finding(tmp_path: Path) -> None:
    report = {
        "dependencies": [
            {"name": name, "skip_reason": "Dependency not found on PyPI"} for name, _ in INSTALLED
        ],
        "fixes": [],
    }
    command = fake_pip_audit(tmp_path, json.dumps(report))
    [finding] = audit_dependencies(installed=INSTALLED, command=command)
    assert (finding.id, finding.severity) == ("dependency.audit_unavailable", "info")
    assert finding.detail == (
        "could not check: none of 3 distributions could be checked — the vulnerability "
        "service (PyPI's JSON API / OSV) is unreachable from here"
    )


def test_vulnerabilities_and_skips_from_pip_audit(tmp_path: Path) -> None:
    report = {
        "dependencies": [
            {
                "name": "pyyaml",
                "version": "6.0.1",
                "vulns": [{"id": "PYSEC-1", "fix_versions": ["6.0.2"], "aliases": []}],
            },
            {"name": "requests", "version": "2.31.0", "vulns": []},
            {"name": "tiny", "skip_reason": "not on PyPI"},
        ]
    }
    findings = audit_dependencies(
        installed=INSTALLED, command=fake_pip_audit(tmp_path, json.dumps(report))
    )
    assert [(f.id, f.severity, f.subjects) for f in findings] == [
        ("dependency.vulnerable", "high", ("pyyaml==6.0.1: PYSEC-1 (fixed in 6.0.2)",)),
        ("dependency.audit_incomplete", "info", ("tiny",)),
    ]


def test_clean_pip_audit_report(tmp_path: Path) -> None:
    report = {"dependencies": [{"name": n, "version": v, "vulns": []} for n, v in INSTALLED]}
    command = fake_pip_audit(tmp_path, json.dumps(report))
    assert audit_dependencies(installed=INSTALLED, command=command) == []


def test_pip_audit_without_a_report(tmp_path: Path) -> None:
    command = fake_pip_audit(tmp_path, "", "ERROR: something broke\n", status=1)
    [finding] = audit_dependencies(installed=INSTALLED, command=command)
    assert finding.id == "dependency.audit_unavailable"
    assert finding.detail == "could not check: pip-audit gave no report (ERROR: something broke)"


def test_pip_audit_missing(tmp_path: Path) -> None:
    [finding] = audit_dependencies(installed=INSTALLED, command=[str(tmp_path / "no-such-tool")])
    assert finding.id == "dependency.audit_unavailable"
    assert finding.detail.startswith("could not check: pip-audit could not start (")


def test_requirements_given_to_pip_audit(tmp_path: Path) -> None:
    # The fake echoes the requirements file it was given as skipped dependencies.
    script = tmp_path / "echo_requirements.py"
    script.write_text(
        "import json, sys\n"
        "path = sys.argv[sys.argv.index('-r') + 1]\n"
        "assert '--no-deps' in sys.argv and '--disable-pip' in sys.argv\n"
        "lines = open(path).read().split()\n"
        "print(json.dumps({'dependencies': [{'name': l, 'skip_reason': 'x'} for l in lines]}))\n"
    )
    [finding] = audit_dependencies(installed=INSTALLED, command=[sys.executable, str(script)])
    assert finding.detail.startswith("could not check: none of 3 distributions")
