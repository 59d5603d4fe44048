"""The dependency audit: installed distributions against known vulnerabilities.

Online, the installed ``name==version`` pairs go to ``pip-audit`` (run as a
subprocess of this interpreter: its Python API is private) with ``--no-deps
--disable-pip``, so only what is installed is checked and nothing is resolved
or downloaded. When the vulnerability service cannot be reached the audit
reports ONE ``dependency.audit_unavailable`` finding (severity info) saying
why, instead of failing or pretending to pass.

Offline, an advisory file replaces the service (air-gapped sites, tests)::

    {"advisories": [{"package": "pyyaml", "id": "PYSEC-2021-142",
                     "affected": "<5.4", "fixed_in": ["5.4"], "summary": "…"}]}

``affected`` is a PEP 440 specifier set matched against the installed version.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.doctor.findings import DoctorError, Finding

__all__ = [
    "AUDIT_TIMEOUT",
    "Advisory",
    "AdvisoryFileError",
    "audit_dependencies",
    "installed_distributions",
    "load_advisories",
]

#: Longest the pip-audit subprocess may run (seconds) before the audit counts as unavailable.
AUDIT_TIMEOUT: Final = 300.0
#: Distributions never sent to the service: bastion itself is not on PyPI under this version.
_SELF: Final = frozenset({"bastion"})


class AdvisoryFileError(DoctorError):
    """The ``--advisories`` file cannot be read or is not an advisory list."""

    code = "invalid_advisory_file"


class Advisory(BaseModel):
    """One known vulnerability of one package (the offline advisory file's entries)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    package: str = Field(min_length=1)
    id: str = Field(min_length=1)
    affected: str
    fixed_in: list[str] = Field(default_factory=list)
    summary: str = ""


class _AdvisoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advisories: list[Advisory]


def load_advisories(path: Path) -> list[Advisory]:
    """Read an offline advisory file.

    Raises:
        AdvisoryFileError: unreadable, not JSON, wrong shape, or a bad ``affected`` specifier,
            naming the file and the entry.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AdvisoryFileError(
            f"cannot read advisory file {path}: {exc.strerror or exc} — check the path"
        ) from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdvisoryFileError(f"advisory file {path} is not JSON ({exc})") from None
    try:
        parsed = _AdvisoryFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "file"
        raise AdvisoryFileError(
            f"advisory file {path} is not an advisory list ({where}: {first['msg']}) — "
            'use {"advisories": [{"package": …, "id": …, "affected": "<2.0"}]}'
        ) from None
    for index, advisory in enumerate(parsed.advisories):
        try:
            SpecifierSet(advisory.affected)
        except InvalidSpecifier:
            raise AdvisoryFileError(
                f"advisory file {path}: advisories.{index}.affected {advisory.affected!r} is "
                "not a version specifier — use e.g. '<2.0' or '>=1.0,<1.4.2'"
            ) from None
    return parsed.advisories


def installed_distributions() -> list[tuple[str, str]]:
    """``(canonical name, version)`` of every distribution installed in this environment."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        canonical = canonicalize_name(name)
        if canonical not in _SELF:
            found.setdefault(canonical, dist.version)
    return sorted(found.items())


def _vulnerable(vulnerabilities: Sequence[tuple[str, str, str, Sequence[str]]]) -> Finding:
    subjects = tuple(
        f"{name}=={version}: {vuln_id}" + (f" (fixed in {', '.join(fixes)})" if fixes else "")
        for name, version, vuln_id, fixes in vulnerabilities
    )
    packages = sorted({f"{name}=={version}" for name, version, _, _ in vulnerabilities})
    return Finding(
        "dependency.vulnerable",
        "high",
        "installed dependencies with known vulnerabilities",
        f"{len(subjects)} known vulnerabilit{'y' if len(subjects) == 1 else 'ies'} in "
        f"{', '.join(packages)}",
        "upgrade to a fixed version (see subjects) and redeploy; `make audit` checks the lock "
        "file in CI",
        subjects,
    )


def _unavailable(reason: str) -> Finding:
    return Finding(
        "dependency.audit_unavailable",
        "info",
        "the dependency audit could not run",
        f"could not check: {reason}",
        "run `bastion doctor` where pypi.org or osv.dev is reachable, or pass an offline "
        "advisory file with --advisories",
    )


def _match_offline(
    installed: Iterable[tuple[str, str]], advisories: Sequence[Advisory]
) -> list[Finding]:
    by_package: dict[str, list[Advisory]] = {}
    for advisory in advisories:
        by_package.setdefault(canonicalize_name(advisory.package), []).append(advisory)
    hits: list[tuple[str, str, str, Sequence[str]]] = []
    for name, version in installed:
        for advisory in by_package.get(name, ()):
            try:
                affected = Version(version) in SpecifierSet(advisory.affected)
            except InvalidVersion:
                affected = False
            if affected:
                hits.append((name, version, advisory.id, advisory.fixed_in))
    return [_vulnerable(hits)] if hits else []


def _run_pip_audit(
    installed: Sequence[tuple[str, str]], command: Sequence[str] | None, timeout: float
) -> list[Finding]:
    with tempfile.TemporaryDirectory(prefix="bastion-doctor-") as directory:
        requirements = Path(directory) / "requirements.txt"
        requirements.write_text("".join(f"{name}=={version}\n" for name, version in installed))
        argv = [
            *(command or (sys.executable, "-m", "pip_audit")),
            "--format",
            "json",
            "--progress-spinner",
            "off",
            "--no-deps",
            "--disable-pip",
            "-r",
            str(requirements),
        ]
        try:
            proc = subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return [_unavailable(f"pip-audit did not finish within {timeout:g}s")]
        except OSError as exc:
            return [_unavailable(f"pip-audit could not start ({exc.strerror or exc})")]
    try:
        report: Any = json.loads(proc.stdout)
        dependencies = report["dependencies"]
    except (json.JSONDecodeError, KeyError, TypeError):
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        return [_unavailable(f"pip-audit gave no report ({why[:200]})")]
    audited = [dep for dep in dependencies if "skip_reason" not in dep]
    if dependencies and not audited:
        return [
            _unavailable(
                f"none of {len(dependencies)} distributions could be checked — the "
                "vulnerability service (PyPI's JSON API / OSV) is unreachable from here"
            )
        ]
    hits = [
        (
            str(dep["name"]),
            str(dep["version"]),
            str(vuln["id"]),
            list(vuln.get("fix_versions") or []),
        )
        for dep in audited
        for vuln in dep.get("vulns") or ()
    ]
    findings = [_vulnerable(hits)] if hits else []
    skipped = sorted(str(dep.get("name")) for dep in dependencies if "skip_reason" in dep)
    if skipped:
        findings.append(
            Finding(
                "dependency.audit_incomplete",
                "info",
                "some dependencies could not be audited",
                f"{len(skipped)} of {len(dependencies)} distributions were skipped "
                f"(not found on the vulnerability service): {', '.join(skipped[:10])}",
                "check those packages' advisories by hand",
                tuple(skipped),
            )
        )
    return findings


def audit_dependencies(
    *,
    advisories: Sequence[Advisory] | None = None,
    installed: Sequence[tuple[str, str]] | None = None,
    command: Sequence[str] | None = None,
    timeout: float = AUDIT_TIMEOUT,
) -> list[Finding]:
    """The dependency findings for this environment (blocking: runs a subprocess online).

    With ``advisories`` nothing leaves the machine; otherwise pip-audit (``command``,
    default this interpreter's ``-m pip_audit``) asks the vulnerability service.
    Never raises for an unreachable service: that is a ``dependency.audit_unavailable``
    finding.
    """
    installed = list(installed) if installed is not None else installed_distributions()
    if advisories is not None:
        return _match_offline(installed, advisories)
    return _run_pip_audit(installed, command, timeout)
