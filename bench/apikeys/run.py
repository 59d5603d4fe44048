"""Benchmark API key verification with 1, 10,000 and 1,000,000 keys stored, SQLite and PostgreSQL.

Usage (from the repository root)::

    .venv/bin/python bench/apikeys/run.py            # N = 1, 10k, 1M; 20 rounds; writes RESULTS.md
    .venv/bin/python bench/apikeys/run.py --quick    # N = 1, 10k; 3 rounds; prints only
    .venv/bin/python bench/apikeys/run.py --keep     # keep the PostgreSQL databases for reuse

What is measured (issue 4 acceptance: the per-request cost must not grow with the number of
keys stored), in-process, one core (the script re-executes itself under ``taskset -c 0``):

- **cold** — ``ApiKeyService.verify(key)`` with the service's cache emptied before every call:
  parse + checksum, digest, cache miss, one indexed ``SELECT … WHERE digest = :d`` through
  bastion's storage layer (aiosqlite / asyncpg), the per-call checks, last-used noted in memory.
- **warm** — ``ApiKeyService.verify(key)`` on keys already verified once (cache hit: no I/O).
- **db lookup** — ``db.api_keys.find_by_digest(digest)`` alone: the database floor of *cold*.
- baselines — ``hashlib.sha256(key).hexdigest()`` (what every verify must pay at least) and
  ``parse_api_key`` + ``api_key_digest`` (the offline work verify does before any lookup).

Each case verifies many random keys out of the N stored (a sample of up to ``--sample`` keys).
Cases run interleaved in rounds (every backend and N back to back in each round) so that they
all see the same machine; the report gives the median and best µs per verify over the rounds,
the ratio to the raw SHA-256 digest, and the flatness ``µs(N = 1M) / µs(N = 1)``.

Datasets (reused between runs, see ``--data-dir``, default /tmp/bastion-bench-apikeys):

- ``keys.txt`` — real keys from ``generate_api_key`` (the first N lines are the N-key dataset;
  generated once, extended when a larger N is asked for). These are bench-only keys that exist
  only in the bench databases; the file is created mode 0600 anyway.
- ``sqlite-n<N>.db`` — a migrated SQLite database holding the first N keys, built once with
  SQLAlchemy Core ``executemany`` and reused while it still matches ``keys.txt``.
- PostgreSQL: one fresh database per N (``bastion_bench_n<N>`` on the server of ``--postgres``),
  migrated with ``bastion.storage.migrate`` and loaded with ``COPY`` (asyncpg
  ``copy_records_to_table``); dropped at the end unless ``--keep`` (a kept database is reused
  when it still matches ``keys.txt``).

Rows are made by the storage layer's own record mapper from real ``ApiKey`` records, so they are
exactly what ``bastion keys create`` would store.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import hashlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "src"))

import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bastion.crypto.apikeys import api_key_digest, generate_api_key, parse_api_key  # noqa: E402
from bastion.storage import ApiKey, Database, migrate  # noqa: E402
from bastion.storage.sql import schema  # noqa: E402
from bastion.storage.sql.repositories import SqlApiKeyRepository  # noqa: E402

FULL_SIZES = (1, 10_000, 1_000_000)
QUICK_SIZES = (1, 10_000)
BACKENDS = ("sqlite", "postgresql")
DEFAULT_DATA_DIR = Path("/tmp/bastion-bench-apikeys")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
CREATED_AT = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHUNK = 50_000


class BenchError(Exception):
    """A dataset could not be built, or a verification returned the wrong key."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------
# datasets


def ensure_keys(path: Path, count: int) -> list[str]:
    """The first ``count`` keys of ``path``, generating (and appending) any missing ones."""
    keys: list[str] = []
    if path.exists():
        with path.open() as fh:
            for line in fh:
                keys.append(line.rstrip("\n"))
                if len(keys) == count:
                    break
    missing = count - len(keys)
    if missing > 0:
        log(f"generating {missing:,} API keys with generate_api_key() into {path}")
        started = time.perf_counter()
        new = [generate_api_key() for _ in range(missing)]
        if len(set(new) | set(keys)) != count:  # ~190 random bits: never, but cheap to check
            raise BenchError("generate_api_key returned a duplicate key")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write("".join(key + "\n" for key in new))
        keys.extend(new)
        log(f"  {missing:,} keys in {time.perf_counter() - started:.1f} s")
    return keys


_MAPPER = SqlApiKeyRepository.mapper
_COLUMNS = [column.name for column in schema.api_keys.columns]
_JSON_COLUMNS = {c.name for c in schema.api_keys.columns if isinstance(c.type, sa.JSON)}


def key_record(index: int, key: str) -> ApiKey:
    """The ``ApiKey`` record ``ApiKeyService.create`` would store for key number ``index``."""
    return ApiKey(
        digest=api_key_digest(key),
        prefix=parse_api_key(key).display_prefix,
        name=f"bench key {index}",
        owner_type="user",
        owner_id=f"user-{index % 1000}",
        scopes=("orders:read", "orders:write"),
        metadata={"bench": True},
        created_at=CREATED_AT,
        updated_at=CREATED_AT,
    )


def key_rows(keys: Sequence[str], start: int, stop: int) -> Iterator[dict[str, Any]]:
    for index in range(start, stop):
        yield _MAPPER.to_row(key_record(index, keys[index]))


def chunks(keys: Sequence[str], count: int) -> Iterator[tuple[int, int]]:
    for start in range(0, count, CHUNK):
        yield start, min(count, start + CHUNK)


async def dataset_matches(url: str, keys: Sequence[str], count: int) -> bool:
    """Whether the database at ``url`` holds exactly the first ``count`` keys (spot-checked)."""
    try:
        db = await Database.connect(url, pool_size=1)
    except Exception:
        return False
    try:
        await db.check_schema()
        async with db.transaction() as conn:
            stored = (
                await conn.execute(sa.select(sa.func.count()).select_from(schema.api_keys))
            ).scalar_one()
        if stored != count:
            return False
        for index in {0, count // 2, count - 1}:
            if await db.api_keys.find_by_digest(api_key_digest(keys[index])) is None:
                return False
        return True
    except Exception:
        return False
    finally:
        await db.close()


async def ensure_sqlite(data_dir: Path, keys: Sequence[str], count: int) -> str:
    """A migrated SQLite file holding the first ``count`` keys (built once, then reused)."""
    path = data_dir / f"sqlite-n{count}.db"
    url = f"sqlite:///{path}"
    if path.exists() and await dataset_matches(url, keys, count):
        log(f"sqlite N={count:,}: reusing {path}")
        return url
    building = path.with_name(path.name + ".building")
    for stale in (path, building):
        for suffix in ("", "-wal", "-shm"):
            Path(str(stale) + suffix).unlink(missing_ok=True)
    log(f"sqlite N={count:,}: building {path}")
    started = time.perf_counter()
    await migrate(f"sqlite:///{building}")
    engine = sa.create_engine(
        f"sqlite:///{building}",
        json_serializer=lambda value: orjson.dumps(value).decode(),
    )
    try:
        with engine.begin() as conn:
            # A throwaway build: durability is not needed until the final checkpoint.
            conn.exec_driver_sql("PRAGMA synchronous = OFF")
            for start, stop in chunks(keys, count):
                conn.execute(schema.api_keys.insert(), list(key_rows(keys, start, stop)))
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    building.rename(path)
    for suffix in ("-wal", "-shm"):
        Path(str(building) + suffix).unlink(missing_ok=True)
    log(f"  loaded {count:,} keys in {time.perf_counter() - started:.1f} s")
    return url


def _pg_url(server: str, database: str) -> str:
    parts = urlsplit(server.replace("postgresql+asyncpg://", "postgresql://"))
    return urlunsplit(parts._replace(path="/" + database))


async def _pg_admin(server: str, sql: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(_pg_url(server, urlsplit(server).path.lstrip("/") or "postgres"))
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def pg_database_name(count: int) -> str:
    return f"bastion_bench_n{count}"


async def ensure_postgres(server: str, keys: Sequence[str], count: int) -> str:
    """A fresh migrated PostgreSQL database holding the first ``count`` keys (loaded by COPY)."""
    import asyncpg

    name = pg_database_name(count)
    url = _pg_url(server, name)
    exists = await _pg_admin(server, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    if exists and await dataset_matches(url, keys, count):
        log(f"postgresql N={count:,}: reusing database {name} (kept by an earlier --keep run)")
        return url
    log(f"postgresql N={count:,}: creating database {name}")
    started = time.perf_counter()
    await _pg_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _pg_admin(server, f'CREATE DATABASE "{name}"')
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            for start, stop in chunks(keys, count):
                records = [
                    tuple(
                        orjson_text(row[c]) if c in _JSON_COLUMNS else row.get(c) for c in _COLUMNS
                    )
                    for row in key_rows(keys, start, stop)
                ]
                await conn.copy_records_to_table("api_keys", records=records, columns=_COLUMNS)
        await conn.execute("VACUUM ANALYZE api_keys")
    finally:
        await conn.close()
    log(f"  loaded {count:,} keys in {time.perf_counter() - started:.1f} s")
    return url


def orjson_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def drop_postgres(server: str, sizes: Sequence[int]) -> None:
    for count in sizes:
        await _pg_admin(server, f'DROP DATABASE IF EXISTS "{pg_database_name(count)}" WITH (FORCE)')


# ---------------------------------------------------------------------------
# measurement


@dataclass
class Case:
    backend: str
    size: int
    mode: str  # one of MODES
    samples: list[float] = field(default_factory=list)  # µs per operation, one per round

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def best(self) -> float:
        return min(self.samples)


MODES = ("cold", "warm", "repo", "driver")
MODE_LABELS = {
    "cold": "cold verify (cache miss)",
    "warm": "warm verify (cache hit)",
    "repo": "find_by_digest alone",
    "driver": "raw driver query",
}


@dataclass
class Target:
    """One database (backend, N) with what each mode measures on it."""

    backend: str
    size: int
    db: Any
    cold: Any  # ApiKeyService whose cache is emptied before every verify
    warm: Any  # ApiKeyService with the warm set cached (a separate cache)
    raw: Callable[[str], Awaitable[object]]  # the same SELECT straight on the driver
    close_raw: Callable[[], Awaitable[None]]
    sample: list[str]  # keys (plaintext) drawn at random from the stored ones
    warm_set: list[str]


def make_service(db: Any) -> Any:
    from bastion.apikeys import ApiKeyService
    from bastion.settings import Settings
    from bastion.storage.shared import MemorySharedState

    return ApiKeyService(db, Settings(), MemorySharedState())


def keep_cache_entries() -> None:
    """Make cached keys stay fresh for the whole run (bench only).

    A warm entry normally lives ``POSITIVE_TTL`` (30 s) and the rounds take longer than that;
    refilling the warm set every round would cost a cold lookup per key. The TTL only decides
    *when* an entry is refetched, not what a hit costs, so the bench lengthens it.
    """
    from bastion.apikeys import service

    service.POSITIVE_TTL = 24 * 3600.0  # type: ignore[misc]


async def raw_query(backend: str, url: str) -> tuple[Any, Any]:
    """The lookup ``find_by_digest`` issues, on a bare driver connection: (fetch, close)."""
    if backend == "sqlite":
        import aiosqlite

        conn = await aiosqlite.connect(url.removeprefix("sqlite:///"))

        async def fetch_sqlite(digest: str) -> object:
            async with conn.execute("SELECT * FROM api_keys WHERE digest = ?", (digest,)) as cur:
                return await cur.fetchone()

        return fetch_sqlite, conn.close
    import asyncpg

    pg = await asyncpg.connect(url)
    statement = await pg.prepare("SELECT * FROM api_keys WHERE digest = $1")

    async def fetch_pg(digest: str) -> object:
        return await statement.fetchrow(digest)

    return fetch_pg, pg.close


async def _time_each(
    fn: Callable[[str], Awaitable[object]],
    items: list[str],
    budget: float,
    before: Callable[[], None] | None = None,
) -> float:
    """µs per ``await fn(item)``, cycling through ``items`` for at least ``budget`` seconds."""
    done = 0
    elapsed = 0.0
    while elapsed < budget:
        start = done % len(items)
        batch = items[start : start + 500]
        started = time.perf_counter()
        if before is None:
            for item in batch:
                await fn(item)
        else:
            for item in batch:
                before()
                await fn(item)
        elapsed += time.perf_counter() - started
        done += len(batch)
    return elapsed / done * 1e6


async def time_cold(target: Target, budget: float) -> float:
    """µs per verify with the service's cache emptied before every call."""
    service = target.cold
    return await _time_each(service.verify, target.sample, budget, lambda: service.invalidate(None))


async def time_warm(target: Target, budget: float) -> float:
    """µs per verify on keys the service has cached."""
    return await _time_each(target.warm.verify, target.warm_set, budget)


async def time_repo(target: Target, budget: float) -> float:
    """µs per ``db.api_keys.find_by_digest`` (digests computed beforehand)."""
    digests = [api_key_digest(key) for key in target.sample]
    return await _time_each(target.db.api_keys.find_by_digest, digests, budget)


async def time_driver(target: Target, budget: float) -> float:
    """µs per raw driver query by digest (digests computed beforehand)."""
    digests = [api_key_digest(key) for key in target.sample]
    return await _time_each(target.raw, digests, budget)


TIMERS: dict[str, Callable[[Target, float], Awaitable[float]]] = {
    "cold": time_cold,
    "warm": time_warm,
    "repo": time_repo,
    "driver": time_driver,
}


def time_sync(fn: Callable[[str], object], keys: Sequence[str], budget: float) -> float:
    done = 0
    elapsed = 0.0
    while elapsed < budget:
        started = time.perf_counter()
        for key in keys:
            fn(key)
        elapsed += time.perf_counter() - started
        done += len(keys)
    return elapsed / done * 1e6


def raw_sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_and_digest(key: str) -> str:
    parse_api_key(key)
    return api_key_digest(key)


async def check_target(target: Target) -> None:
    """Sampled keys verify to their own stored record (so the bench measures real work)."""
    for key in {target.sample[0], target.sample[-1]}:
        target.cold.invalidate(None)
        verified = await target.cold.verify(key)
        stored = await target.db.api_keys.find_by_digest(api_key_digest(key))
        row = await target.raw(api_key_digest(key))
        if stored is None or row is None or verified.id != stored.id:
            raise BenchError(f"{target.backend} N={target.size}: verify returned the wrong key")
        if verified.digest != api_key_digest(key):
            raise BenchError(f"{target.backend} N={target.size}: verify returned the wrong key")


# ---------------------------------------------------------------------------
# report


@dataclass
class Report:
    sizes: tuple[int, ...]
    backends: tuple[str, ...]
    rounds: int
    cases: dict[tuple[str, int, str], Case]
    baselines: dict[str, list[float]]
    load_times: dict[str, float]
    started: dt.datetime
    loadavg: tuple[float, float, float]
    versions: dict[str, str]
    sample_size: int
    warm_size: int

    def baseline(self, name: str) -> float:
        """The best (lowest) µs of a baseline over the rounds."""
        return min(self.baselines[name])

    def table(self) -> str:
        sha = self.baseline("sha256")
        first = self.sizes[0]
        lines = [
            f"| backend | keys stored | path | best µs | median µs | x sha256 | vs N={first:,} |",
            "|---|---:|---|---:|---:|---:|---:|",
        ]
        for backend in self.backends:
            for mode in MODES:
                base = self.cases[(backend, first, mode)].best
                for size in self.sizes:
                    case = self.cases[(backend, size, mode)]
                    lines.append(
                        f"| {backend} | {size:,} | {MODE_LABELS[mode]} | {case.best:.1f} | "
                        f"{case.median:.1f} | {case.best / sha:,.0f} | {case.best / base:.2f} |"
                    )
        return "\n".join(lines)

    def flatness(self) -> list[str]:
        """``µs(largest N) / µs(smallest N)`` per backend and path (and vs the middle N)."""
        out = []
        big, small = self.sizes[-1], self.sizes[0]
        middle = self.sizes[-2] if len(self.sizes) > 2 else None
        for backend in self.backends:
            for mode in MODES:
                b = self.cases[(backend, big, mode)]
                s = self.cases[(backend, small, mode)]
                line = (
                    f"- {backend}, {MODE_LABELS[mode]}: N={big:,} / N={small:,} = "
                    f"**{b.best / s.best:.2f}** (best), {b.median / s.median:.2f} (median)"
                )
                if middle is not None:
                    m = self.cases[(backend, middle, mode)]
                    line += f"; N={big:,} / N={middle:,} = {b.best / m.best:.2f} (best)"
                out.append(line)
        return out

    def text(self) -> str:
        sha = self.baseline("sha256")
        pd = self.baseline("parse+digest")
        head = [
            f"- date: {self.started:%Y-%m-%d %H:%M} UTC",
            f"- machine: {platform.machine()}, nproc={os.cpu_count()}, {platform.platform()}",
            f"- {', '.join(f'{k} {v}' for k, v in self.versions.items())}",
            f"- process pinned to core 0 ({'taskset -c 0' if pinned() else 'NOT pinned'}); "
            f"load average at start {self.loadavg[0]:.2f}",
            f"- {self.rounds} interleaved rounds; per case and round ≥ the time budget of "
            f"operations over {self.sample_size:,} random stored keys (cold, lookups) or "
            f"{self.warm_size:,} cached keys (warm)",
            f"- baselines (best): raw hashlib.sha256 hexdigest {sha:.2f} µs; "
            f"parse_api_key + api_key_digest {pd:.2f} µs",
        ]
        if self.load_times:
            head.append(
                "- dataset preparation this run: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in self.load_times.items())
            )
        return (
            "\n".join(head)
            + "\n\n"
            + self.table()
            + "\n\nFlatness:\n\n"
            + "\n".join(self.flatness())
        )


def pinned() -> bool:
    return hasattr(os, "sched_getaffinity") and os.sched_getaffinity(0) == {0}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for dist in ("sqlalchemy", "aiosqlite", "asyncpg", "uvloop"):
        out[dist] = version(dist)
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    return out


async def pg_server_version(server: str) -> str:
    rows = await _pg_admin(server, "SHOW server_version")
    return str(rows[0][0]).split()[0]


# ---------------------------------------------------------------------------
# main


def progress(cases: dict[tuple[str, int, str], Case], t: Target) -> str:
    cold = cases[(t.backend, t.size, "cold")].samples[-1]
    warm = cases[(t.backend, t.size, "warm")].samples[-1]
    return f"{t.backend[:2]} N={t.size:,} cold {cold:.0f} warm {warm:.1f}"


async def run(args: argparse.Namespace) -> Report:
    sizes: tuple[int, ...] = tuple(args.sizes)
    backends: tuple[str, ...] = tuple(args.backends)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    loadavg = os.getloadavg()
    load_times: dict[str, float] = {}

    keep_cache_entries()
    t0 = time.perf_counter()
    keys = ensure_keys(args.data_dir / "keys.txt", max(sizes))
    load_times["keys"] = time.perf_counter() - t0
    rng = random.Random(args.seed)

    vers = versions()
    targets: list[Target] = []
    try:
        for backend in backends:
            if backend == "postgresql":
                vers["postgresql"] = await pg_server_version(args.postgres)
            for size in sizes:
                t0 = time.perf_counter()
                if backend == "sqlite":
                    url = await ensure_sqlite(args.data_dir, keys, size)
                else:
                    url = await ensure_postgres(args.postgres, keys, size)
                load_times[f"{backend} N={size:,}"] = time.perf_counter() - t0
                db = await Database.connect(url, pool_size=2)
                await db.check_schema()
                raw, close_raw = await raw_query(backend, url)
                stored = keys[:size]
                sample = [stored[rng.randrange(size)] for _ in range(args.sample)]
                warm = rng.sample(stored, min(size, args.warm))
                target = Target(
                    backend,
                    size,
                    db,
                    make_service(db),
                    make_service(db),
                    raw,
                    close_raw,
                    sample,
                    warm,
                )
                targets.append(target)
                await check_target(target)
                for key in warm:  # fill the warm service's cache once (see keep_cache_entries)
                    await target.warm.verify(key)
        del keys

        cases: dict[tuple[str, int, str], Case] = {}
        for t in targets:
            for mode in MODES:
                cases[(t.backend, t.size, mode)] = Case(t.backend, t.size, mode)
        baselines: dict[str, list[float]] = {"sha256": [], "parse+digest": []}
        # Warm-up: one short pass of everything (imports, statement caches, DB buffers).
        for t in targets:
            for timer in TIMERS.values():
                await timer(t, 0.05)
        gc.collect()
        gc.freeze()
        log(f"measuring: {args.rounds} rounds x {len(cases)} cases x ~{args.budget} s")
        for round_no in range(args.rounds):
            order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
            baselines["sha256"].append(time_sync(raw_sha256, order[0].sample, args.budget / 4))
            baselines["parse+digest"].append(
                time_sync(parse_and_digest, order[0].sample, args.budget / 4)
            )
            for t in order:
                for mode, timer in TIMERS.items():
                    cases[(t.backend, t.size, mode)].samples.append(await timer(t, args.budget))
            log(f"round {round_no + 1}: " + "; ".join(progress(cases, t) for t in targets))
    finally:
        for t in targets:
            await t.db.close()
            await t.close_raw()
        if "postgresql" in backends:
            if args.keep:
                log("keeping PostgreSQL databases: " + ", ".join(map(pg_database_name, sizes)))
            else:
                await drop_postgres(args.postgres, sizes)
                log("dropped the PostgreSQL bench databases (use --keep to reuse them)")
    return Report(
        sizes=sizes,
        backends=backends,
        rounds=args.rounds,
        cases=cases,
        baselines=baselines,
        load_times=load_times,
        started=started,
        loadavg=loadavg,
        versions=vers,
        sample_size=args.sample,
        warm_size=args.warm,
    )


def write_results(report: Report, path: Path) -> None:
    text = path.read_text() if path.exists() else ""
    marker_start, marker_end = "<!-- results:start -->", "<!-- results:end -->"
    block = f"{marker_start}\n{report.text()}\n{marker_end}"
    if marker_start in text and marker_end in text:
        before, rest = text.split(marker_start, 1)
        after = rest.split(marker_end, 1)[1]
        text = before + block + after
    else:
        text = "# API key verification benchmark\n\n" + block + "\n"
    path.write_text(text)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="N up to 10,000 only; 3 rounds; print only"
    )
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL databases")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(BACKENDS))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--budget", type=float, default=0.2, help="seconds per case and round")
    parser.add_argument("--sample", type=int, default=20_000, help="random keys for cold/db")
    parser.add_argument("--warm", type=int, default=10_000, help="cached keys for warm")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BASTION_TEST_POSTGRES_URL", DEFAULT_POSTGRES),
        help="a PostgreSQL server URL allowed to CREATE/DROP DATABASE",
    )
    parser.add_argument("--results", type=Path, default=None, help="write the report here")
    parser.add_argument("--no-pin", action="store_true", help="do not re-run under taskset -c 0")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 20
    if args.results is None and not args.quick:
        args.results = HERE / "RESULTS.md"
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}; use {','.join(BACKENDS)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not args.no_pin and not pinned() and shutil.which("taskset"):
        # One core for the whole process, including aiosqlite's worker threads.
        os.execvp("taskset", ["taskset", "-c", "0", sys.executable, __file__, *argv])
    try:
        import uvloop

        report = uvloop.run(run(args))  # the event loop bastion's server runs on
    except ImportError:
        report = asyncio.run(run(args))
    print()
    print(report.text())
    if args.results is not None:
        write_results(report, args.results)
        print(f"\nwrote {args.results}")


if __name__ == "__main__":
    try:
        main()
    except (BenchError, subprocess.CalledProcessError) as exc:
        sys.exit(f"bench/apikeys: {exc}")
