"""Benchmark the rate limiter: cost per decision (in-process and Redis) and the multi-node figures.

Usage (from the repository root)::

    .venv/bin/python bench/ratelimit/run.py               # cost per decision, prints
    .venv/bin/python bench/ratelimit/run.py --write       # ... and rewrites RESULTS.md's block
    .venv/bin/python bench/ratelimit/run.py --multinode   # also runs the 3-node acceptance
                                                          # tests and records their lines

Cost per decision, in-process on uvloop, one request checked against 2 limits (a per-key and a
per-route limit, as the limit step does):

- ``memory``: ``MemoryLimiter.check`` (dict of TATs, integer GCRA);
- ``redis sequential``: ``RedisLimiter.check`` one after another (one EVALSHA round trip each);
- ``redis x64``: 64 checks in flight at once (what a busy node does): throughput per decision;
- ``peek``: the non-consuming read behind ``bastion limits show`` (cost 0).

Redis is ``$BASTION_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), keys under a
random prefix, deleted afterwards. The multi-node figures come from
``tests/features/ratelimit`` (needs ``BASTION_TEST_POSTGRES_URL`` too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from bastion.ratelimit import Limit, MemoryLimiter, RedisLimiter
from bastion.storage.shared import RedisSharedState

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LIMITS = (Limit(1_000_000, 1.0), Limit(10_000_000, 60.0))


def checks(i: int) -> list[tuple[str, Limit]]:
    return [(f"k:{i % 1000}", LIMITS[0]), (f"route:{i % 10}", LIMITS[1])]


async def bench_memory(n: int) -> tuple[float, float]:
    limiter = MemoryLimiter()
    started = time.perf_counter()
    for i in range(n):
        await limiter.check(checks(i))
    consume = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for i in range(n):
        await limiter.check(checks(i), cost=0)
    return consume, (time.perf_counter() - started) / n


async def bench_redis(url: str, n: int) -> tuple[float, float, list[float]]:
    state = await RedisSharedState.connect(
        url, key_prefix=f"bench:{secrets.token_hex(4)}:", operation_timeout=10.0
    )
    try:
        limiter = RedisLimiter(state, timeout=10.0)  # cost, not this busy box's timeouts
        for i in range(200):  # warm the connection and the script cache
            await limiter.check(checks(i))
        latencies = []
        started = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await limiter.check(checks(i))
            latencies.append(time.perf_counter() - t)
        sequential = (time.perf_counter() - started) / n
        started = time.perf_counter()
        for block in range(0, n, 64):
            await asyncio.gather(*(limiter.check(checks(i)) for i in range(block, block + 64)))
        concurrent = (time.perf_counter() - started) / (n // 64 * 64)
        async for key in state.client.scan_iter(match=state.key_prefix + "*"):
            await state.client.delete(key)
        return sequential, concurrent, latencies
    finally:
        await state.close()


def multinode() -> str:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/features/ratelimit",
        "tests/gateway/test_shedding.py",
        "-q",
        "-s",
        "-p",
        "no:randomly",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    keep = re.compile(r"^(in-process|Redis|http|no shedding|shedding|warm-up)")
    lines = [line for line in done.stdout.splitlines() if keep.match(line.strip())]
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "(no output)"
    return "\n".join([*lines, f"pytest: {tail}"])


async def main(args: argparse.Namespace) -> str:
    url = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    memory = [await bench_memory(args.n) for _ in range(args.rounds)]
    redis = [await bench_redis(url, args.redis_n) for _ in range(args.rounds)]
    latencies = sorted(x for _, _, lat in redis for x in lat)
    p = lambda q: latencies[int(q * (len(latencies) - 1))] * 1e6  # noqa: E731
    rows = [
        ("memory, consume (2 limits)", statistics.median(m[0] for m in memory) * 1e6),
        ("memory, peek (cost 0)", statistics.median(m[1] for m in memory) * 1e6),
        ("redis sequential (1 EVALSHA)", statistics.median(r[0] for r in redis) * 1e6),
        ("redis, 64 in flight, per decision", statistics.median(r[1] for r in redis) * 1e6),
    ]
    out = [
        f"rounds: {args.rounds}; memory n={args.n}; redis n={args.redis_n}",
        "",
        "| path | µs per decision (median of rounds) |",
        "|---|---|",
        *(f"| {name} | {us:.1f} |" for name, us in rows),
        "",
        f"redis sequential latency: p50 {p(0.5):.0f} µs, p99 {p(0.99):.0f} µs, max {p(1.0):.0f} µs",
    ]
    if args.multinode:
        out += ["", "```", multinode(), "```"]
    return "\n".join(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--redis-n", type=int, default=5_000)
    parser.add_argument("--multinode", action="store_true")
    parser.add_argument("--write", action="store_true", help="rewrite the block in RESULTS.md")
    arguments = parser.parse_args()
    report = uvloop.run(main(arguments))
    print(report)
    if arguments.write:
        path = HERE / "RESULTS.md"
        text = path.read_text(encoding="utf-8")
        begin, end = "<!-- generated -->", "<!-- /generated -->"
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        path.write_text(f"{head}{begin}\n{report}\n{end}{tail}", encoding="utf-8")
