"""The load generator of bench/oidc: authorization-code round trips over keep-alive connections.

Usage (started by ``run.py`` pinned to core 1; prints JSON lines on stdout)::

    python bench/oidc/load.py SPEC.json

One round trip, per connection and strictly in sequence: ``GET`` the authorize URL with the
session cookie → a 303 whose ``Location`` carries ``code`` → ``POST`` the token request with that
code (``client_secret_basic``) → a 200. Latency is measured per round trip (both requests), which
wrk's per-request hooks cannot do (its Lua sees no connection identity), hence this client: plain
HTTP/1.1 over asyncio streams on uvloop, one coroutine per connection, no HTTP library.

It prints ``{"event": "measuring"}`` when the measured window starts (so the harness samples the
server's CPU time then) and, at its end, one result line: round trips, their p50/p99, errors (the
first few described), and the CPU this process used per wall second (1.0: its core was busy).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import uvloop  # the venv has it (uvicorn[standard])


class RoundTripError(Exception):
    """A response that was not the expected 303-with-code or 200."""


@dataclass
class Tally:
    measuring: bool = False
    stop: bool = False
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    examples: list[str] = field(default_factory=list)

    def fail(self, what: str) -> None:
        if self.measuring:
            self.errors += 1
            if len(self.examples) < 5:
                self.examples.append(what)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunks.append(await reader.readexactly(size + 2))
            if size == 0:
                break
        body = b"".join(chunk[:-2] for chunk in chunks)
    else:
        body = b""
    return status, headers, body


async def _connection(spec: dict[str, str], tally: Tally) -> None:
    host, port = spec["host"], int(spec["port"])
    authorize = (
        f"GET {spec['authorize']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: {spec['cookie']}\r\n\r\n"
    ).encode()
    token_head = (
        f"POST {spec['token']} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {spec['basic']}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
    )
    token_tail = "&redirect_uri=" + spec["redirect_uri_q"] + "&code_verifier=" + spec["verifier"]
    reader, writer = await asyncio.open_connection(host, port)
    while not tally.stop:
        started = time.perf_counter()
        try:
            writer.write(authorize)
            status, headers, _ = await _response(reader)
            codes = parse_qs(urlsplit(headers.get("location", "")).query).get("code")
            if status != 303 or not codes:
                raise RoundTripError(f"authorize {status} {headers.get('location', '')[:200]}")
            body = f"grant_type=authorization_code&code={codes[0]}{token_tail}".encode()
            writer.write(f"{token_head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status, headers, raw = await _response(reader)
            if status != 200 or b'"id_token"' not in raw:
                raise RoundTripError(f"token {status} {raw[:200]!r}")
        except RoundTripError as exc:
            tally.fail(str(exc))
            continue
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.fail(f"{type(exc).__name__}: {exc}")
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            continue
        if tally.measuring:
            tally.latencies.append(time.perf_counter() - started)
        if headers.get("connection", "").lower() == "close":
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
    writer.close()


def _percentile(sorted_values: list[float], share: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(share * len(sorted_values)))]


async def _main(spec: dict[str, str]) -> dict[str, object]:
    tally = Tally()
    tasks = [asyncio.create_task(_connection(spec, tally)) for _ in range(int(spec["connections"]))]
    await asyncio.sleep(float(spec["warmup"]))
    print(json.dumps({"event": "measuring"}), flush=True)
    tally.measuring = True
    cpu0, wall0 = sum(os.times()[:2]), time.monotonic()
    await asyncio.sleep(float(spec["duration"]))
    tally.measuring = False
    cpu, wall = sum(os.times()[:2]) - cpu0, time.monotonic() - wall0
    tally.stop = True
    await asyncio.wait(tasks, timeout=10)
    latencies = sorted(tally.latencies)
    return {
        "event": "result",
        "round_trips": len(latencies),
        "rps": len(latencies) / wall,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "errors": tally.errors,
        "examples": tally.examples,
        "client_cpu": cpu / wall,
    }


def main() -> None:
    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    uvloop.install()
    print(json.dumps(asyncio.run(_main(spec))), flush=True)


if __name__ == "__main__":
    main()
