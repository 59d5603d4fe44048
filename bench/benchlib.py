"""What the load-generating benchmarks share: tool checks, free ports and wrk's command and errors.

The run scripts are started by path (``.venv/bin/python bench/<name>/run.py``), so each puts
this folder on ``sys.path`` before importing it.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


def need(tool: str, hint: str) -> None:
    """Exit with ``hint`` when ``tool`` is not on PATH."""
    if shutil.which(tool) is None:
        sys.exit(f"{tool} is not installed: {hint}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Terminate ``proc``; kill it if it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk_argv(
    url: str, seconds: int, connections: int, script: Path | str | None = None
) -> list[str]:
    """wrk with one thread pinned to core 1 (the servers run on core 0), with percentiles."""
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    return [*argv, url]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk_ms(text: str) -> float | None:
    """A wrk latency ("812.00us", "1.20ms", "2.01s", "1.00m") in milliseconds; None if not one."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk_errors(out: str) -> int:
    """Non-2xx/3xx responses plus socket errors in wrk's report: any is a failed request."""
    errors = 0
    if bad := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
        errors += int(bad.group(1))
    if sock := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(n) for n in sock.groups())
    return errors


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured: requests/s, p50 and p99 in ms, failed requests."""

    rps: float
    p50: float
    p99: float
    errors: int


def run_wrk(url: str, seconds: int, connections: int, script: Path | str | None = None) -> WrkRun:
    """Run :func:`wrk_argv`'s wrk and read its report (``RuntimeError`` when it lacks a figure)."""
    out = subprocess.run(
        wrk_argv(url, seconds, connections, script), check=True, capture_output=True, text=True
    ).stdout

    def grab(pattern: str) -> str:
        match = re.search(pattern, out)
        if not match:
            raise RuntimeError(f"wrk output lacks {pattern!r}:\n{out}")
        return match.group(1)

    p50, p99 = wrk_ms(grab(r"\s50%\s+(\S+)")), wrk_ms(grab(r"\s99%\s+(\S+)"))
    if p50 is None or p99 is None:
        raise RuntimeError(f"unparseable wrk latencies in:\n{out}")
    return WrkRun(float(grab(r"Requests/sec:\s+([\d.]+)")), p50, p99, wrk_errors(out))


def write_report(path: Path, report: str, marker: str) -> None:
    """Write ``report`` to ``path``, keeping the hand-written text from ``marker`` on."""
    if path.exists() and marker in (old := path.read_text()):
        report += "\n" + marker + old.split(marker, 1)[1]
    path.write_text(report)
    print(f"wrote {path}")
