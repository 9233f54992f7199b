"""The DuckLake warehouse against the single DuckDB file it replaced, on the same work.

Both sides run DuckDB 1.4.4 in this process. The file side reproduces the old storage module's
access pattern (a short connection per call that re-checks the schema, a primary key on the vector
store); the lake side is the Warehouse (one attached lake, schema checked once). Rows:

1. one partition write of N comments (delete + insert in one transaction, a re-run of the day);
2. a vector lookup of N hashes, half of them stored, vectors returned;
3. reading a day's vectors for clustering (the join the clusters asset does);
4. a backfill of D days through the write path: every table write and read the six assets do per
   day, in a plain Python loop, one day after the other.

Ratios are lake / file: above 1 the lake is slower. ``make bench-warehouse``; results go to
docs/benchmarks.md between the ``bench:warehouse`` markers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from bench._doc import machine_description, write_section
from embed_dagster.core.warehouse.lake import LakeConfig, Warehouse
from embed_dagster.core.warehouse.schema import TABLES, VIEWS
from embed_dagster.core.warehouse.vector_store import arrow_to_matrix, matrix_to_arrow

DIM = 512
START = date(2025, 1, 1)


class FileWarehouse:
    """The old design, as storage.py / vector_store.py did it before the lake (for comparison only)."""

    def __init__(self, path: Path):
        self.path = path

    @contextmanager
    def _con(self):
        con = duckdb.connect(str(self.path))
        try:
            for t in TABLES.values():  # the old code ensured the schema on every connection
                cols = ", ".join(f"{c.name} {c.type}" for c in t.columns)
                pk = f", PRIMARY KEY ({', '.join(t.primary_key)})" if t.primary_key else ""
                con.execute(f"CREATE TABLE IF NOT EXISTS {t.name} ({cols}{pk})")
            for name, sql in VIEWS.items():
                con.execute(f"CREATE VIEW IF NOT EXISTS {name} AS {sql}")
            yield con
        finally:
            con.close()

    def replace_partition(self, day, writes):
        with self._con() as con:
            con.execute("BEGIN TRANSACTION")
            for table, rows in writes.items():
                extra, rows = rows if isinstance(rows, tuple) else ({}, rows)
                key = {"partition_date": day, **extra}
                con.execute(
                    f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = ?" for k in key), list(key.values())
                )
                if rows.num_rows:
                    consts = "".join(f"?::{_type(table, k)} AS {k}, " for k in key)
                    con.register("r", rows)
                    con.execute(f"INSERT INTO {table} BY NAME SELECT {consts}* FROM r", list(key.values()))
            con.execute("COMMIT")

    def lookup(self, key, hashes):
        with self._con() as con:
            con.register("w", pa.table({"text_hash": hashes}))
            t = con.sql(
                "SELECT s.text_hash, s.vector FROM embedding_store s "
                "JOIN (SELECT DISTINCT text_hash FROM w) w USING (text_hash) "
                "WHERE s.model_key = ? ORDER BY s.text_hash",
                params=[key],
            ).to_arrow_table()
        return t.column("text_hash").to_pylist(), arrow_to_matrix(t.column("vector"), DIM)

    def save(self, key, hashes, matrix, partition_date=None):
        with self._con() as con:
            con.register("n", pa.table({"text_hash": hashes, "vector": matrix_to_arrow(matrix)}))
            con.execute(
                "INSERT INTO embedding_store (model_key, text_hash, dim, vector, created_at, "
                "first_partition_date) SELECT ?, text_hash, ?, vector::FLOAT[], now(), ?::DATE FROM n "
                "ON CONFLICT DO NOTHING",
                [key, DIM, partition_date],
            )

    def vectors_for_day(self, day, key, dim):
        with self._con() as con:
            t = con.sql(
                "SELECT d.text_hash, d.text, d.comment_count, s.vector FROM deduplicated_texts d "
                "JOIN embedding_store s ON s.text_hash = d.text_hash AND s.model_key = ? "
                "WHERE d.partition_date = ? ORDER BY d.text_hash",
                params=[key, day],
            ).to_arrow_table()
        return t.drop(["vector"]), arrow_to_matrix(t.column("vector"), dim)

    def read(self, sql, params):
        with self._con() as con:
            return con.sql(sql, params=params).to_arrow_table()


class LakeWarehouse:
    """The same operations through the Warehouse."""

    def __init__(self, root: Path):
        self.wh = Warehouse.embedded(root)

    def replace_partition(self, day, writes):
        return self.wh.replace_partition(day, writes)

    def lookup(self, key, hashes):
        return self.wh.lookup(key, hashes)

    def save(self, key, hashes, matrix, partition_date=None):
        return self.wh.save(key, hashes, matrix, partition_date=partition_date)

    def vectors_for_day(self, day, key, dim):
        return self.wh.vectors_for_day(day, key, dim)

    def read(self, sql, params):
        return self.wh.sql(sql, params)


def _type(table, column):
    return next(c.type for c in TABLES[table].columns if c.name == column)


def comments(day, n, tag="c"):
    return pa.table(
        {
            "comment_id": [f"{tag}{day}-{i}" for i in range(n)],
            "created_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
            "text": [
                f"comment number {i} of {day}: the parcel arrived late and the box was damaged"
                for i in range(n)
            ],
            "source_file": ["comments.jsonl"] * n,
            "source_row": pa.array(range(1, n + 1), pa.int64()),
            "extra": ["{}"] * n,
        }
    )


def unit_vectors(n, seed):
    m = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def timed(fn, repeat=1):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def backfill_day(wh, day, n, key):
    """What the six assets write and read for one day (sizes of a demo day)."""
    raw = comments(day, n)
    wh.replace_partition(
        day,
        {
            "raw_comments": raw,
            "quarantine": ({"source_asset": "raw_comments"}, pa.table({"reason": pa.array([], pa.string())})),
        },
    )
    wh.read("SELECT comment_id, text FROM raw_comments WHERE partition_date = ?", [day])
    distinct = n // 2
    hashes = [f"{day}-h{i}" for i in range(distinct)]
    texts = pa.table(
        {
            "text_hash": hashes,
            "text": hashes,
            "comment_count": pa.array([2] * distinct, pa.int64()),
            "normalization_version": pa.array([1] * distinct, pa.int32()),
        }
    )
    mapping = pa.table(
        {"comment_id": raw.column("comment_id"), "text_hash": [hashes[i // 2] for i in range(n)]}
    )
    wh.replace_partition(day, {"deduplicated_texts": texts, "comment_texts": mapping})
    found, _ = wh.lookup(key, hashes)
    wh.replace_partition(
        day,
        {"cached_embeddings": pa.table({"text_hash": found, "model_key": [key] * len(found)})},
    )
    wh.save(key, hashes, unit_vectors(distinct, seed=day.toordinal()), partition_date=day)
    wh.replace_partition(
        day, {"fresh_embeddings": pa.table({"text_hash": hashes, "model_key": [key] * distinct})}
    )
    texts_t, matrix = wh.vectors_for_day(day, key, DIM)
    labels = pa.array((np.arange(n) % 10).astype(np.int32))
    wh.replace_partition(
        day,
        {
            "clusters": pa.table(
                {
                    "comment_id": raw.column("comment_id"),
                    "text_hash": mapping.column("text_hash"),
                    "cluster_id": labels,
                }
            )
        },
    )
    wh.read("SELECT * FROM topics WHERE partition_date < ?", [day])
    wh.replace_partition(
        day,
        {
            "topics": pa.table(
                {
                    "topic_id": [f"T{day}-{i}" for i in range(10)],
                    "cluster_id": pa.array(range(10), pa.int32()),
                }
            )
        },
    )


def run(args) -> list[tuple[str, float, float]]:
    root = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    results = []
    try:
        sides = {"file": FileWarehouse(root / "old.duckdb"), "lake": LakeWarehouse(root / "lake")}
        key = "bench-model"
        for side in sides.values():  # warm: schema created, extensions loaded
            side.replace_partition(START - timedelta(days=1), {"raw_comments": comments(START, 10)})

        n = args.comments
        t = {
            name: timed(lambda s=s: s.replace_partition(START, {"raw_comments": comments(START, n)}), 3)
            for name, s in sides.items()
        }
        results.append(
            (f"one partition write of {n:,} comments (re-run of the day, median of 3)", t["file"], t["lake"])
        )

        stored = [f"s{i}" for i in range(args.store)]
        vectors = unit_vectors(args.store, seed=1)
        t = {}
        for name, s in sides.items():
            t[name] = timed(
                lambda s=s: [
                    s.save(key, stored[i : i + 20_000], vectors[i : i + 20_000])
                    for i in range(0, args.store, 20_000)
                ]
            )
        results.append((f"store {args.store:,} vectors ({DIM}-d), batches of 20k", t["file"], t["lake"]))
        wanted = stored[: args.lookup // 2] + [f"missing{i}" for i in range(args.lookup - args.lookup // 2)]
        t = {name: timed(lambda s=s: s.lookup(key, wanted), 3) for name, s in sides.items()}
        results.append(
            (f"vector lookup of {args.lookup:,} hashes (50% stored), median of 3", t["file"], t["lake"])
        )

        day_texts = stored[: args.day_texts]
        texts = pa.table(
            {
                "text_hash": day_texts,
                "text": day_texts,
                "comment_count": pa.array([1] * len(day_texts), pa.int64()),
                "normalization_version": pa.array([1] * len(day_texts), pa.int32()),
            }
        )
        for s in sides.values():
            s.replace_partition(START, {"deduplicated_texts": texts})
        t = {name: timed(lambda s=s: s.vectors_for_day(START, key, DIM), 3) for name, s in sides.items()}
        results.append(
            (f"read a day's {args.day_texts:,} vectors for clustering, median of 3", t["file"], t["lake"])
        )

        t = {}
        for name, s in sides.items():
            days = [START + timedelta(days=10 + i) for i in range(args.days)]
            t[name] = timed(lambda s=s, days=days: [backfill_day(s, d, args.per_day, key) for d in days])
        results.append(
            (
                f"{args.days}-day backfill of the write path ({args.per_day:,} comments/day, sequential)",
                t["file"],
                t["lake"],
            )
        )
        lake_files = sides["lake"].wh.file_stats()
        results.append(
            ("(lake data files after the run, before maintenance)", float("nan"), lake_files["files"])
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def _write_days(root: str, days: list[str], rows: int) -> None:
    """One writer process of the concurrent backfill: raw_comments then clusters, per day."""
    wh = Warehouse(LakeConfig.embedded(root))
    for iso in days:
        day = date.fromisoformat(iso)
        raw = comments(day, rows)
        wh.replace_partition(day, {"raw_comments": raw})
        wh.replace_partition(
            day,
            {
                "clusters": pa.table(
                    {
                        "comment_id": raw.column("comment_id"),
                        "text_hash": raw.column("comment_id"),
                        "cluster_id": pa.array([0] * rows, pa.int32()),
                    }
                )
            },
        )
    wh.close()


def concurrent_backfill(root: Path, days: int, procs: int, rows: int, reader: bool) -> dict:
    """``procs`` writer processes share ``days`` days; optionally a reader polls the CLI every 100 ms."""
    Warehouse(LakeConfig.embedded(root)).ensure_schema()
    isos = [(START + timedelta(days=i)).isoformat() for i in range(days)]
    reads = {"ok": 0, "failed": 0, "stop": False, "seconds": []}
    cli = Path(sys.executable).parent / "embed-dagster"

    def poll():
        while not reads["stop"]:
            t = time.perf_counter()
            done = subprocess.run(
                [str(cli), "--lake", str(root), "sql", "SELECT count(*) FROM raw_comments"],
                capture_output=True,
                text=True,
            )
            reads["seconds"].append(time.perf_counter() - t)
            reads["ok" if done.returncode == 0 else "failed"] += 1
            time.sleep(0.1)

    thread = threading.Thread(target=poll, daemon=True)
    started = time.perf_counter()
    if reader:
        thread.start()
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.bench_warehouse", "--writer", str(root), str(rows), *isos[i::procs]]
        )
        for i in range(procs)
    ]
    codes = [w.wait() for w in workers]
    seconds = time.perf_counter() - started
    reads["stop"] = True
    if reader:
        thread.join()
    assert codes == [0] * procs, codes
    wh = Warehouse(LakeConfig.embedded(root), read_only=True)
    counts = wh.partition_counts("raw_comments")
    assert counts == {date.fromisoformat(d): rows for d in isos}, counts
    wh.close()
    return {
        "seconds": seconds,
        "reads_ok": reads["ok"],
        "reads_failed": reads["failed"],
        "read_s": statistics.median(reads["seconds"]) if reads["seconds"] else 0.0,
    }


def readers_section(args) -> str:
    root = Path(tempfile.mkdtemp(prefix="bench-warehouse-readers-"))
    try:
        load = os.getloadavg()[0]
        alone = concurrent_backfill(root / "a", args.days_concurrent, 4, args.rows_concurrent, reader=False)
        polled = concurrent_backfill(root / "b", args.days_concurrent, 4, args.rows_concurrent, reader=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return "\n".join(
        [
            "### Readers during a concurrent backfill",
            "",
            f"{args.days_concurrent} days of {args.rows_concurrent:,} comments (raw_comments then "
            "clusters, one transaction each) written by 4 processes at once into one lake, first alone, "
            'then while a reader runs `embed-dagster sql "SELECT count(*) FROM raw_comments"` in a new '
            f"process every 100 ms. Load average (1 min) {load:.1f} at the start.",
            "",
            "| | backfill s | reads ok | reads failed | median read s (process start included) |",
            "|---|---|---|---|---|",
            f"| writers alone | {alone['seconds']:.1f} | | | |",
            f"| writers + polling reader | {polled['seconds']:.1f} | {polled['reads_ok']} "
            f"| {polled['reads_failed']} | {polled['read_s']:.2f} |",
            "",
            f"Ratio with reader / alone: **{polled['seconds'] / alone['seconds']:.2f}** (on a 2-core "
            "machine the reader's own process start-up competes for the same CPUs).",
        ]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--store", type=int, default=200_000)
    parser.add_argument("--lookup", type=int, default=100_000)
    parser.add_argument("--day-texts", type=int, default=30_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=400)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--only", choices=["all", "ratios", "readers"], default="all")
    parser.add_argument("--days-concurrent", type=int, default=7)
    parser.add_argument("--rows-concurrent", type=int, default=20_000)
    parser.add_argument("--writer", nargs="+", help=argparse.SUPPRESS)  # ROOT ROWS DAY...: a writer process
    args = parser.parse_args(argv)
    if args.writer:
        _write_days(args.writer[0], args.writer[2:], int(args.writer[1]))
        return
    if args.only == "readers":
        text = readers_section(args)
        print(text)
        if not args.no_write:
            print(f"written to {write_section('warehouse-readers', text)}")
        return
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = run(args)
    load_after = os.getloadavg()
    lines = [
        "## Warehouse: DuckLake lake vs the single DuckDB file (`make bench-warehouse`)",
        "",
        f"Machine: {machine_description()}. Load average (1 min) {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; the run took {time.perf_counter() - started:.0f} s. "
        "Both sides DuckDB 1.4.4 in one process; lake = SQLite catalog + Parquet files on local disk. "
        "Ratio = lake / file (above 1: the lake is slower).",
        "",
        "| operation | DuckDB file s | lake s | ratio |",
        "|---|---|---|---|",
    ]
    for name, old, new in results:
        if old != old:  # NaN: a count, not a timing
            lines.append(f"| {name} | | {int(new)} | |")
        else:
            lines.append(f"| {name} | {old:.2f} | {new:.2f} | {new / old:.2f} |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        print(f"written to {write_section('warehouse', text)}")
    if args.only == "all":
        text = readers_section(args)
        print(text)
        if not args.no_write:
            print(f"written to {write_section('warehouse-readers', text)}")


if __name__ == "__main__":
    main()
