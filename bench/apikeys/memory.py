"""Stored API keys cost no memory until used (issue 14): 1 vs 1,000,000 keys stored.

Usage (from the repository root)::

    .venv/bin/python bench/apikeys/memory.py                 # N = 1 and 1,000,000 (SQLite)
    .venv/bin/python bench/apikeys/memory.py --sizes 1 20000 # quicker

For each N, a fresh process (so one N's allocations never hide another's) opens an
:class:`~bastion.apikeys.ApiKeyService` over the SQLite dataset of ``run.py`` (the same
``keys.txt`` and ``sqlite-n<N>.db``, built on first use, reused after), with the native
mirror installed as ``bastion serve`` does, and reports:

- the process's resident memory (``VmRSS``) after opening, and the Python heap the opening
  allocated (``tracemalloc``): flat in N, because nothing is loaded before a key is presented;
- the cache sizes, Python's and the native plane's, before and after ``--use`` keys are
  verified and ``--unknown`` made-up keys refused: exactly those keys, whatever N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _run_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_apikeys_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def measure(data_dir: Path, count: int, use: int, unknown: int) -> dict[str, Any]:
    run = _run_module()
    from bastion import _native
    from bastion.apikeys import ApiKeyService
    from bastion.apikeys.errors import InvalidApiKeyError
    from bastion.crypto.apikeys import generate_api_key
    from bastion.gateway import native_push
    from bastion.settings import Settings
    from bastion.storage import Database
    from bastion.storage.shared import MemorySharedState

    keys = run.ensure_keys(data_dir / "keys.txt", count)
    url = await run.ensure_sqlite(data_dir, keys, count)
    sample = random.Random(7).sample(keys, min(use, count))
    del keys
    rss_before = _rss_kib()
    tracemalloc.start()
    settings = Settings()
    db = await Database.connect(url)
    service = ApiKeyService(db, settings, MemorySharedState())
    native_push.install(settings, None)
    service.mirror(native_push.NativeApiKeys())
    opened_heap = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss_opened = _rss_kib()
    caches_opened = (len(service._found), _native.api_keys_len())
    try:
        for key in sample:
            await service.verify(key)
        for _ in range(unknown):
            with contextlib.suppress(InvalidApiKeyError):
                await service.verify(generate_api_key())
        return {
            "stored": count,
            "rss_open_kib": rss_opened - rss_before,
            "heap_open_kib": opened_heap // 1024,
            "cached_before": caches_opened,
            "cached_after": (len(service._found), _native.api_keys_len()),
            "refused_after": (len(service._unknown), _native.api_keys_refused_len()),
            "rss_used_kib": _rss_kib() - rss_opened,
        }
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1_000_000])
    parser.add_argument("--use", type=int, default=1000, help="keys verified after opening")
    parser.add_argument("--unknown", type=int, default=100, help="made-up keys refused")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/bastion-bench-apikeys"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        result = asyncio.run(measure(args.data_dir, args.one, args.use, args.unknown))
        print(json.dumps(result))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                *("--one", str(size), "--use", str(args.use), "--unknown", str(args.unknown)),
                *("--data-dir", str(args.data_dir)),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        "| keys stored | RSS growth opening | heap opening | cached before (py, native) "
        f"| cached after {args.use} used (py, native) | refused after {args.unknown} unknown "
        f"| RSS growth serving them |"
    )
    print("|---:|---:|---:|---|---|---|---:|")
    for r in rows:
        print(
            f"| {r['stored']:,} | {r['rss_open_kib']:,} KiB | {r['heap_open_kib']:,} KiB "
            f"| {tuple(r['cached_before'])} | {tuple(r['cached_after'])} "
            f"| {tuple(r['refused_after'])} | {r['rss_used_kib']:,} KiB |"
        )


if __name__ == "__main__":
    main()
