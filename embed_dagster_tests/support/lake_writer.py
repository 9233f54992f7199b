"""A writer process for the lake concurrency tests: writes a day the way the pipeline does.

For each day: raw_comments (+ empty quarantine) in one transaction, then clusters in another,
both built from the same deterministic comments, so a day written twice by two processes must end
with one copy and a clean conservation ledger. Prints one JSON line with its commit retries.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date

import pyarrow as pa

from embed_dagster.core.warehouse.lake import LakeConfig, Warehouse


def comments(day: date, n: int) -> pa.Table:
    return pa.table(
        {
            "comment_id": [f"{day}-{i}" for i in range(n)],
            "created_at": pa.array([None] * n, pa.timestamp("us", tz="UTC")),
            "text": [f"comment {i} of {day}" for i in range(n)],
            "source_file": ["comments.jsonl"] * n,
            "source_row": pa.array(range(1, n + 1), pa.int64()),
            "extra": ["{}"] * n,
        }
    )


def clusters(day: date, n: int) -> pa.Table:
    return pa.table(
        {
            "comment_id": [f"{day}-{i}" for i in range(n)],
            "text_hash": [f"h{i}" for i in range(n)],
            "cluster_id": pa.array([i % 7 for i in range(n)], pa.int32()),
            "probability": pa.array([1.0] * n, pa.float64()),
        }
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=240.0)
    parser.add_argument("days", nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    wh = Warehouse(LakeConfig(args.catalog, args.data_path, commit_timeout_s=args.timeout))
    snapshots = []
    empty_quarantine = pa.table({"reason": pa.array([], pa.string())})
    for iso in args.days:
        day = date.fromisoformat(iso)
        snapshots.append(
            wh.replace_partition(
                day,
                {
                    "raw_comments": comments(day, args.rows),
                    "quarantine": ({"source_asset": "raw_comments"}, empty_quarantine),
                },
            )
        )
        snapshots.append(wh.replace_partition(day, {"clusters": clusters(day, args.rows)}))
    print(json.dumps({"retries": wh.commit_retries, "snapshots": snapshots}), flush=True)
    wh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
